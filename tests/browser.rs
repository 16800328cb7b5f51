//! The run report in a real browser: headless Chromium loads the report of a cascade scenario
//! and the test checks, in the DOM after the page's script ran, that the lanes, the fault
//! markers and the invariant list are there and that no script error was logged. Skipped, with a
//! message saying so, where Chromium is not installed (`.ci/run` installs it).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// How long Chromium may take to load and render one page.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

fn chromium() -> Option<PathBuf> {
    let fixed = PathBuf::from("/usr/bin/chromium");
    if fixed.exists() {
        return Some(fixed);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Runs headless Chromium on `page` with `mode` (`--dump-dom` or `--screenshot=…`); returns
/// (stdout, stderr).
fn headless(browser: &Path, page: &Path, mode: &[String]) -> (String, String) {
    let profile = tempfile::tempdir().expect("a scratch profile directory");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1400,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(mode)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let started = Instant::now();
    while child.try_wait().expect("waiting on chromium").is_none() {
        if started.elapsed() > BROWSER_TIMEOUT {
            let _ = child.kill();
            panic!("chromium did not finish within {BROWSER_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("chromium output");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_report_of_a_cascade_renders_in_chromium_without_script_errors() {
    let Some(browser) = chromium() else {
        eprintln!(
            "SKIPPED the_report_of_a_cascade_renders_in_chromium_without_script_errors: Chromium is not installed \
             (looked for /usr/bin/chromium and chromium on PATH; `apt-get install chromium`, as .ci/run does)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let output = agentsim_output(&[
        "run",
        "scenarios/double-refund.toml",
        "--out",
        run_dir.to_str().unwrap(),
    ]);
    assert_eq!(
        status(&output),
        1,
        "double-refund breaks its invariant: {}",
        stderr(&output)
    );
    let page = run_dir.join("report.html");

    let (dom, log) = headless(&browser, &page, &["--dump-dom".to_owned()]);
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page's script did not run to its end:\n{log}"
    );
    assert!(
        dom.contains("<pre id=\"script-errors\" class=\"script-errors\"></pre>"),
        "the page caught script errors: {}",
        dom.split("id=\"script-errors\"")
            .nth(1)
            .unwrap_or("")
            .chars()
            .take(500)
            .collect::<String>()
    );
    for line in log.lines() {
        assert!(
            !(line.contains("CONSOLE") && (line.contains("Uncaught") || line.contains("Error"))),
            "script error in the console: {line}"
        );
    }
    for actor in ["user", "agent:billing", "tool:refund", "llm:gpt"] {
        assert!(
            dom.contains(&format!("data-actor=\"{actor}\"")),
            "no lane for {actor} in the DOM"
        );
    }
    assert!(
        dom.contains("<g class=\"fault-marker\" "),
        "no fault marker on the timeline"
    );
    assert!(dom.contains("id=\"invariant-list\""), "no invariant list");
    assert!(
        dom.contains("<li class=\"invariant failed\">"),
        "the broken invariant is not listed"
    );
    // Only the first timeline page is shown.
    assert_eq!(
        dom.matches("<div class=\"page\" data-page=").count(),
        1 + dom.matches(" hidden=\"\"").count()
    );

    let shot = dir.path().join("report.png");
    let (_, log) = headless(&browser, &page, &[format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot ({e}):\n{log}"));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "the screenshot is not a rendered page"
    );
}

#[test]
fn the_report_zooms_and_its_invariant_links_lead_to_the_timeline() {
    let Some(browser) = chromium() else {
        eprintln!(
            "SKIPPED the_report_zooms_and_its_invariant_links_lead_to_the_timeline: Chromium is not installed \
             (looked for /usr/bin/chromium and chromium on PATH)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let output = agentsim_output(&[
        "run",
        "scenarios/double-refund.toml",
        "--out",
        run_dir.to_str().unwrap(),
    ]);
    assert_eq!(status(&output), 1, "{}", stderr(&output));
    // A copy of the report with a script that acts as a reader would, after the page's own.
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    let probe = r##"<script>
(function(){
  var b = document.body, svg = document.querySelector('svg.plot'), w0 = +svg.getAttribute('width');
  var marker = svg.querySelector('g.fault-marker'), x0 = marker.getAttribute('transform');
  document.querySelector('[data-zoom="in"]').click();
  b.setAttribute('data-zoomed-width', String(+svg.getAttribute('width') / w0));
  b.setAttribute('data-marker-moved', String(marker.getAttribute('transform') !== x0));
  document.querySelector('[data-zoom="reset"]').click();
  b.setAttribute('data-reset-width', String(+svg.getAttribute('width') / w0));
  var link = document.querySelector('a[href^="#inv-"]');
  link.click();
  var target = document.getElementById(link.getAttribute('href').slice(1));
  b.setAttribute('data-link-flashed', String(!!target && target.classList.contains('flash')));
})();
</script>
</body>"##;
    let probed = dir.path().join("probed.html");
    std::fs::write(&probed, html.replace("</body>", probe)).unwrap();
    let (dom, log) = headless(&browser, &probed, &["--dump-dom".to_owned()]);
    for (attribute, expected) in [
        ("data-zoomed-width", "2"),
        ("data-marker-moved", "true"),
        ("data-reset-width", "1"),
        ("data-link-flashed", "true"),
    ] {
        assert!(
            dom.contains(&format!("{attribute}=\"{expected}\"")),
            "expected {attribute}=\"{expected}\" on the body; script errors: {}\n{log}",
            dom.split("id=\"script-errors\"")
                .nth(1)
                .unwrap_or("")
                .chars()
                .take(300)
                .collect::<String>()
        );
    }
}
