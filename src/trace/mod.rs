//! The trace: one canonical JSON line per event, and a rolling BLAKE3 digest over exactly the
//! bytes written. Field order and number formatting are fixed by the writer, not by serde.

pub mod reader;
pub mod record;
pub mod records;

pub use record::{HeaderLimits, Record, TRACE_FORMAT};

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use crate::protocol::{clip, hex16_digits, Summary};

/// Where trace records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceMode {
    /// No records, no digest: measures the kernel alone.
    Off,
    /// Records are encoded and hashed, not kept.
    Digest,
    /// Records are kept in memory (for replay comparisons and tests).
    Memory,
    /// Records are written to this file.
    File(PathBuf),
}

/// Bytes hashed and written in one go; the digest does not depend on this size.
const FLUSH_BYTES: usize = 64 * 1024;

/// The trace of one run.
pub struct Trace {
    mode: TraceMode,
    hasher: blake3::Hasher,
    pending: Vec<u8>,
    memory: Vec<u8>,
    file: Option<BufWriter<File>>,
    records: u64,
}

/// Builds one JSON line, `{"k":v,...}\n`, in the order fields are added (used by
/// [`Record::write`] only).
pub(crate) struct Fields<'a> {
    line: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(line: &'a mut Vec<u8>) -> Fields<'a> {
        Fields { line, first: true }
    }

    /// Ends the line.
    pub(crate) fn close(self) {
        self.line.extend_from_slice(b"}\n");
    }

    fn key(&mut self, key: &str) {
        self.line.push(if self.first { b'{' } else { b',' });
        self.first = false;
        self.line.push(b'"');
        self.line.extend_from_slice(key.as_bytes());
        self.line.extend_from_slice(b"\":");
    }

    /// An unsigned integer field.
    pub(crate) fn u64(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        let mut buffer = itoa::Buffer::new();
        self.line.extend_from_slice(buffer.format(value).as_bytes());
        self
    }

    /// A string field, JSON-escaped.
    pub(crate) fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        escape_json_into(value, self.line);
        self
    }

    /// A field whose value is already valid JSON.
    pub(crate) fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        self.key(key);
        self.line.extend_from_slice(json.as_bytes());
        self
    }
}

/// Bytes that JSON strings must escape: `"`, `\\` and control characters.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// The index of the first byte that needs escaping. Eight bytes are checked at a time (a word
/// with no control byte, quote or backslash is skipped whole); the word that has one is
/// searched byte by byte.
fn first_escape(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    /// Whether some byte of `word` is zero.
    const fn has_zero(word: u64) -> bool {
        word.wrapping_sub(ONES) & !word & HIGHS != 0
    }
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS != 0;
        if control || has_zero(word ^ (ONES * u64::from(b'"'))) || has_zero(word ^ (ONES * u64::from(b'\\'))) {
            break;
        }
        at += 8;
    }
    bytes[at..]
        .iter()
        .position(|b| NEEDS_ESCAPE[*b as usize])
        .map(|offset| at + offset)
}

/// Appends `value` as a JSON string literal. Runs of bytes that need no escaping are copied
/// whole (the common case), so encoding costs little more than a copy.
pub fn escape_json_into(value: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    escape_json_body(value, out);
    out.push(b'"');
}

/// Appends `value` as the inside of a JSON string literal, without the quotes. Escaping is byte
/// by byte, so escaping two strings one after the other gives the bytes of escaping the two
/// joined: a literal can be written in pieces.
fn escape_json_body(value: &str, out: &mut Vec<u8>) {
    escape_runs(value.as_bytes(), out, escape_byte);
}

/// Copies `bytes` to `out` in runs, handing each byte a JSON string escapes to `escape`.
fn escape_runs(bytes: &[u8], out: &mut Vec<u8>, escape: impl Fn(u8, &mut Vec<u8>)) {
    let mut start = 0;
    while let Some(offset) = first_escape(&bytes[start..]) {
        let i = start + offset;
        out.extend_from_slice(&bytes[start..i]);
        escape(bytes[i], out);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends the JSON escape of one byte that needs one (see `NEEDS_ESCAPE`).
fn escape_byte(byte: u8, out: &mut Vec<u8>) {
    match byte {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        control => {
            let _ = write!(ByteWriter(out), "\\u{control:04x}");
        }
    }
}

/// The inside of a JSON string literal being written: whatever is written to it lands escaped.
/// A delivery's summary is written through one straight into its trace line, with the bytes
/// that escaping the summary, built first as a `String`, would give.
pub(crate) struct JsonText<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for JsonText<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        escape_json_body(text, self.0);
        Ok(())
    }
}

impl Summary for JsonText<'_> {
    fn lit(&mut self, text: &'static str) -> &mut Self {
        debug_assert!(first_escape(text.as_bytes()).is_none(), "{text:?} needs escaping");
        self.0.extend_from_slice(text.as_bytes());
        self
    }

    fn put(&mut self, text: &str) -> &mut Self {
        escape_json_body(text, self.0);
        self
    }

    fn num<I: itoa::Integer>(&mut self, n: I) -> &mut Self {
        self.0.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        self
    }

    /// `"text"` with `"` and `\` escaped (see [`Summary::quoted`]), then escaped again for
    /// JSON, in one pass: a quote becomes `\\\"`, a backslash `\\\\`.
    fn quoted(&mut self, text: &str) -> &mut Self {
        let out = &mut *self.0;
        out.extend_from_slice(b"\\\"");
        escape_runs(clip(text).as_bytes(), out, |byte, out| {
            if matches!(byte, b'"' | b'\\') {
                // Summary quoting puts a backslash before it; JSON escapes both.
                out.extend_from_slice(b"\\\\");
            }
            escape_byte(byte, out);
        });
        out.extend_from_slice(b"\\\"");
        self
    }

    fn hex16(&mut self, n: u64) -> &mut Self {
        self.0.extend_from_slice(&hex16_digits(n));
        self
    }
}

/// `fmt::Write` into a byte vector.
struct ByteWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

impl Trace {
    /// Opens a trace; `File` mode creates (truncates) the file.
    pub fn open(mode: TraceMode) -> std::io::Result<Trace> {
        let file = match &mode {
            TraceMode::File(path) => Some(BufWriter::new(File::create(path)?)),
            _ => None,
        };
        Ok(Trace {
            mode,
            hasher: blake3::Hasher::new(),
            pending: Vec::with_capacity(FLUSH_BYTES * 2),
            memory: Vec::new(),
            file,
            records: 0,
        })
    }

    /// False when records are not even encoded.
    pub fn is_on(&self) -> bool {
        self.mode != TraceMode::Off
    }

    /// Appends one record.
    pub fn write(&mut self, record: &Record<&str>) -> std::io::Result<()> {
        self.append(|out| record.write(out))
    }

    /// Appends a delivery whose message summary `summarize` writes straight into the line,
    /// escaped as it goes: the bytes of [`Trace::write`] with `Record::Deliver` and the summary
    /// built first, without building it. `from_json` and `to_json` are the actors' ids as JSON
    /// string literals (see [`record::json_string`]), escaped once per run, not per line.
    pub(crate) fn write_delivery(
        &mut self,
        (seq, t_us): (u64, u64),
        from_json: &[u8],
        to_json: &[u8],
        summarize: impl FnOnce(&mut JsonText<'_>),
    ) -> std::io::Result<()> {
        self.append(|out| {
            record::write_deliver(out, (seq, t_us), from_json, to_json, |out| {
                out.push(b'"');
                summarize(&mut JsonText(out));
                out.push(b'"');
            })
        })
    }

    /// Appends one record that `write_line` writes, and flushes when enough is pending.
    fn append(&mut self, write_line: impl FnOnce(&mut Vec<u8>)) -> std::io::Result<()> {
        if !self.is_on() {
            return Ok(());
        }
        write_line(&mut self.pending);
        self.records += 1;
        if self.pending.len() >= FLUSH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.hasher.update(&self.pending);
        match self.mode {
            TraceMode::Memory => self.memory.extend_from_slice(&self.pending),
            TraceMode::File(_) => {
                if let Some(file) = &mut self.file {
                    file.write_all(&self.pending)?;
                }
            }
            TraceMode::Off | TraceMode::Digest => {}
        }
        self.pending.clear();
        Ok(())
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Flushes everything; returns the digest (hex, or `"off"`) and the bytes in `Memory` mode.
    pub fn finish(mut self) -> std::io::Result<(String, Vec<u8>)> {
        if !self.is_on() {
            return Ok(("off".to_owned(), Vec::new()));
        }
        self.flush()?;
        if let Some(mut file) = self.file.take() {
            file.flush()?;
            file.get_ref().sync_all()?;
        }
        Ok((
            self.hasher.finalize().to_hex().to_string(),
            std::mem::take(&mut self.memory),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_escape_finds_the_first_byte_a_json_string_escapes() {
        for text in [
            "",
            "plain words only here",
            "a\"b",
            "0123456789abcdef\\",
            "tab\there",
            "\u{1}",
            "long run of text without any escape, then \n",
        ] {
            let bytes = text.as_bytes();
            let slow = bytes.iter().position(|b| NEEDS_ESCAPE[*b as usize]);
            assert_eq!(first_escape(bytes), slow, "{text:?}");
        }
        for byte in 0..=255u8 {
            for place in 0..20 {
                let mut bytes = vec![b'x'; 20];
                bytes[place] = byte;
                let slow = bytes.iter().position(|b| NEEDS_ESCAPE[*b as usize]);
                assert_eq!(first_escape(&bytes), slow, "byte {byte} at {place}");
            }
        }
    }

    #[test]
    fn records_are_canonical_json_lines_and_the_digest_covers_them() {
        let mut trace = Trace::open(TraceMode::Memory).unwrap();
        trace
            .write(&Record::Deliver {
                seq: 3,
                t_us: 0,
                from: "a",
                to: "b",
                msg: "say \"hi\"\n",
            })
            .unwrap();
        let (digest, bytes) = trace.finish().unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(
            text,
            "{\"seq\":3,\"t_us\":0,\"kind\":\"deliver\",\"from\":\"a\",\"to\":\"b\",\"msg\":\"say \\\"hi\\\"\\n\"}\n"
        );
        assert_eq!(digest, blake3::hash(&bytes).to_hex().to_string());
        serde_json::from_str::<serde_json::Value>(text.trim()).unwrap();
    }

    /// The same summary calls on a `String` and on a `JsonText`: the text written in place is
    /// the `String`, escaped.
    #[test]
    fn a_summary_written_in_place_is_the_summary_escaped() {
        fn summarize<W: Summary + std::fmt::Write>(out: &mut W, text: &str) {
            out.lit("start conv=").num(7u32).lit(" user=").quoted(text);
            out.lit(" name=")
                .put(text)
                .lit(" transcript=")
                .hex16(0x00ab_cdef_0123_4567);
            let _ = write!(out, " raw={text} n={}", -3i64);
        }
        let long = "é\"\\".repeat(60);
        for text in [
            "plain words",
            "say \"hi\" \\ bye",
            "tab\tnew\nline\r bell \u{7} nul \u{0}",
            "ünïcødé ✓ 🚀 and \"quotes\"",
            long.as_str(),
            "",
        ] {
            let mut built = String::new();
            summarize(&mut built, text);
            let mut expected = Vec::new();
            escape_json_into(&built, &mut expected);
            let mut in_place = vec![b'"'];
            summarize(&mut JsonText(&mut in_place), text);
            in_place.push(b'"');
            assert_eq!(
                String::from_utf8(in_place).unwrap(),
                String::from_utf8(expected).unwrap(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn every_string_round_trips_through_the_escaper() {
        let samples = [
            "plain",
            "quote \" backslash \\ done",
            "tab\tnew\nline\r",
            "bell \u{7} nul \u{0}",
            "ünïcødé ✓ 🚀",
            "",
        ];
        for sample in samples {
            let mut out = Vec::new();
            escape_json_into(sample, &mut out);
            let parsed: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(parsed, sample);
        }
    }
}
