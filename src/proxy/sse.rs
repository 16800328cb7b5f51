//! Server-sent events cut into frames: each frame is one whole event, up to and including the
//! blank line that ends it, so frames can be passed on, recorded and replayed one by one.

/// Largest frame kept whole, in bytes; a longer run of bytes without a blank line is passed on
/// as it is.
pub const FRAME_BYTES_MAX: usize = 1024 * 1024;

/// Splits a byte stream into events.
#[derive(Debug, Default)]
pub struct Framer {
    pending: Vec<u8>,
}

impl Framer {
    /// Adds bytes; returns the frames they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(bytes);
        let mut frames = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < self.pending.len() {
            let end = if self.pending[i..].starts_with(b"\n\n") {
                Some(i + 2)
            } else if self.pending[i..].starts_with(b"\r\n\r\n") {
                Some(i + 4)
            } else {
                None
            };
            match end {
                Some(end) => {
                    frames.push(self.pending[start..end].to_vec());
                    start = end;
                    i = end;
                }
                None => i += 1,
            }
        }
        self.pending.drain(..start);
        if self.pending.len() > FRAME_BYTES_MAX {
            frames.push(std::mem::take(&mut self.pending));
        }
        frames
    }

    /// What is left when the stream ends (an event without its blank line), if anything.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

/// The JSON of a frame's `data:` lines, when they hold JSON.
pub fn frame_json(frame: &[u8]) -> Option<serde_json::Value> {
    let text = std::str::from_utf8(frame).ok()?;
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    if data.is_empty() {
        return None;
    }
    serde_json::from_str(&data.join("\n")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_whole_events_however_the_bytes_arrive() {
        let mut framer = Framer::default();
        assert!(framer.push(b"data: {\"a\"").is_empty());
        let frames = framer.push(b":1}\n\ndata: [DONE]\n\nevent: x\r\n\r\ndata: tail");
        assert_eq!(
            frames,
            vec![
                b"data: {\"a\":1}\n\n".to_vec(),
                b"data: [DONE]\n\n".to_vec(),
                b"event: x\r\n\r\n".to_vec()
            ]
        );
        assert_eq!(frame_json(&frames[0]), Some(serde_json::json!({"a": 1})));
        assert_eq!(frame_json(&frames[1]), None);
        assert_eq!(framer.finish(), Some(b"data: tail".to_vec()));
    }
}
