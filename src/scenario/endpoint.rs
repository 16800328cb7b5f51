//! The rule a live model's base URL must pass: where the API key may be sent.

/// Checks a base URL: http or https with a host; plain http only to a loopback host unless
/// `allow_insecure_http`.
pub fn check_base_url(url: &str, allow_insecure_http: bool) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| format!("expected a URL such as \"https://host/v1\", found \"{url}\" ({e})"))?;
    let host = parsed.host_str().unwrap_or("");
    if host.is_empty() {
        return Err(format!("expected a URL with a host, found \"{url}\""));
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure_http || is_loopback(host) => Ok(()),
        "http" => Err(format!(
            "expected https for a host that is not loopback, found \"{url}\"; plain http would send the API key \
             in clear (set `allow_insecure_http = true` to allow it anyway)"
        )),
        other => Err(format!(
            "expected an http or https URL, found scheme \"{other}\" in \"{url}\""
        )),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}
