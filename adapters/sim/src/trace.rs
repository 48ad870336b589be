//! The run's record: a 64-bit hash over every event, always, and a text trace for a
//! person, only when asked.
//!
//! The hash is what the determinism self-check compares, so it must cost almost nothing:
//! it folds integers and byte slices without formatting or allocating. The text trace is
//! built only when enabled, and callers test [`Trace::enabled`] before formatting.

use core::fmt::{self, Write as _};

use flotilla_core::Instant;

/// Multiplier from FxHash; good enough mixing for change detection, and fast.
const K: u64 = 0x517C_C1B7_2722_0A95;

/// Folds values into a 64-bit fingerprint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceHash(u64);

impl Default for TraceHash {
    fn default() -> Self {
        TraceHash(0xCBF2_9CE4_8422_2325)
    }
}

impl TraceHash {
    /// Folds one word.
    #[inline]
    pub fn word(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(K);
    }

    /// Folds a byte string, length first so that concatenations differ.
    pub fn bytes(&mut self, b: &[u8]) {
        self.word(b.len() as u64);
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.word(u64::from_le_bytes(w));
        }
        let mut w = [0u8; 8];
        let rest = chunks.remainder();
        w[..rest.len()].copy_from_slice(rest);
        self.word(u64::from_le_bytes(w));
    }

    /// Folds the `Debug` rendering of a value without allocating: for machine events,
    /// whose types the simulator does not know.
    pub fn debug(&mut self, v: &dyn fmt::Debug) {
        struct Sink<'a>(&'a mut TraceHash);
        impl fmt::Write for Sink<'_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                for b in s.bytes() {
                    self.0.word(u64::from(b));
                }
                Ok(())
            }
        }
        let _ = write!(Sink(self), "{v:?}");
    }

    /// The fingerprint so far.
    pub fn value(&self) -> u64 {
        self.0
    }
}

/// Event kinds as folded into the hash.
#[derive(Copy, Clone, Debug)]
#[repr(u64)]
pub(crate) enum Tag {
    Start = 1,
    Deliver,
    DecodeFailed,
    Timer,
    Action,
    Send,
    Dropped,
    Event,
    ToClient,
    CloseClient,
    Refused,
    Check,
    Effect,
    EffectDone,
}

/// The hash plus, when enabled, the text.
#[derive(Debug, Default)]
pub struct Trace {
    hash: TraceHash,
    text: Option<String>,
}

impl Trace {
    /// A trace that records text when `text` is true.
    pub fn new(text: bool) -> Self {
        Trace {
            hash: TraceHash::default(),
            text: text.then(String::new),
        }
    }

    /// Whether text is being recorded; test this before building a line.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.text.is_some()
    }

    #[inline]
    pub(crate) fn hash(&mut self, time: Instant, node: u64, tag: Tag) {
        self.hash.word(time.as_nanos());
        self.hash.word(node);
        self.hash.word(tag as u64);
    }

    pub(crate) fn hasher(&mut self) -> &mut TraceHash {
        &mut self.hash
    }

    /// Appends one line: the virtual time, right-aligned, then `args`.
    pub fn line(&mut self, time: Instant, args: fmt::Arguments<'_>) {
        if let Some(t) = &mut self.text {
            let _ = writeln!(t, "{:>12} {args}", time.to_string());
        }
    }

    /// The fingerprint of everything so far.
    pub fn fingerprint(&self) -> u64 {
        self.hash.value()
    }

    /// The text so far (empty when not enabled).
    pub fn text(&self) -> &str {
        self.text.as_deref().unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_order_and_content() {
        let h = |parts: &[&[u8]]| {
            let mut t = TraceHash::default();
            for p in parts {
                t.bytes(p);
            }
            t.value()
        };
        assert_eq!(h(&[b"ab", b"c"]), h(&[b"ab", b"c"]));
        assert_ne!(h(&[b"ab", b"c"]), h(&[b"a", b"bc"]));
        assert_ne!(h(&[b"c", b"ab"]), h(&[b"ab", b"c"]));
        let mut a = TraceHash::default();
        a.debug(&Some(1));
        let mut b = TraceHash::default();
        b.debug(&Some(2));
        assert_ne!(a, b);
    }

    #[test]
    fn text_only_when_enabled() {
        let mut off = Trace::new(false);
        off.line(Instant::from_millis(1500), format_args!("x"));
        assert_eq!(off.text(), "");
        let mut on = Trace::new(true);
        on.line(Instant::from_millis(1500), format_args!("-- heal"));
        assert_eq!(on.text(), "   1.500000s -- heal\n");
    }
}
