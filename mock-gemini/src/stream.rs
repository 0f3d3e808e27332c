//! Streamed answers: event framing (Google SSE, JSON array, OpenAI SSE), pacing, and the mid-stream failures tests ask for.

use crate::config::KeyMode;
use crate::error::ApiError;
use crate::util::header_num;
use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use std::time::Duration;

/// How many chunks to send, how fast and how big; set per request by test headers.
#[derive(Clone, Debug)]
pub(crate) struct StreamPlan {
    /// `x-mock-chunks` (default 3, at least 1).
    pub chunks: u32,
    /// `x-mock-chunk-delay-ms` (default 0): pause before every chunk after the first.
    pub delay: Duration,
    /// `x-mock-chunk-bytes` (default 0 = no padding): pad each chunk's text to about this size.
    pub pad_bytes: usize,
    /// `x-mock-pause-after` events (default none) and `x-mock-pause-ms` (default 0): one long
    /// pause in the middle of the stream, after that many events (a model thinking between two
    /// parts of its answer).
    pub pause: Option<(u32, Duration)>,
}

impl StreamPlan {
    pub fn from_headers(headers: &HeaderMap) -> StreamPlan {
        StreamPlan {
            chunks: header_num::<u32>(headers, "x-mock-chunks").unwrap_or(3).clamp(1, 1_000_000),
            delay: Duration::from_millis(header_num(headers, "x-mock-chunk-delay-ms").unwrap_or(0)),
            pad_bytes: header_num::<usize>(headers, "x-mock-chunk-bytes").unwrap_or(0).min(16 * 1024 * 1024),
            pause: header_num::<u32>(headers, "x-mock-pause-after")
                .map(|after| (after, Duration::from_millis(header_num(headers, "x-mock-pause-ms").unwrap_or(0)))),
        }
    }
}

/// How the events of one answer are put on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `streamGenerateContent?alt=sse`: `data: <json>\r\n\r\n`, no end marker.
    GoogleSse,
    /// `streamGenerateContent` without `alt=sse`: one JSON array, streamed element by element.
    JsonArray,
    /// OpenAI-compatible: `data: <json>\n\n`, then `data: [DONE]\n\n`.
    OpenAiSse,
}

impl Framing {
    pub fn content_type(self) -> &'static str {
        match self {
            Framing::GoogleSse | Framing::OpenAiSse => "text/event-stream",
            Framing::JsonArray => "application/json; charset=UTF-8",
        }
    }

    fn event(self, index: u32, json: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(json.len() + 12);
        match self {
            Framing::GoogleSse | Framing::OpenAiSse => out.extend_from_slice(b"data: "),
            Framing::JsonArray => out.extend_from_slice(if index == 0 { b"[" } else { b",\r\n" }),
        }
        out.extend_from_slice(json);
        match self {
            Framing::GoogleSse => out.extend_from_slice(b"\r\n\r\n"),
            Framing::OpenAiSse => out.extend_from_slice(b"\n\n"),
            Framing::JsonArray => {}
        }
        Bytes::from(out)
    }

    fn tail(self) -> &'static [u8] {
        match self {
            Framing::GoogleSse => b"",
            Framing::JsonArray => b"]",
            Framing::OpenAiSse => b"data: [DONE]\n\n",
        }
    }
}

/// How an answer ends, from the key's mode.
#[derive(Clone, Debug)]
pub(crate) enum Ending {
    Complete,
    /// Drop the connection after this many events, without a terminating chunk.
    Die {
        after: u32,
    },
    /// Send an in-band error event after this many events, then end cleanly.
    InBandError {
        after: u32,
    },
}

impl Ending {
    pub fn for_mode(mode: &KeyMode) -> Ending {
        match mode {
            KeyMode::DieMidstream { after_events } => Ending::Die { after: *after_events },
            KeyMode::ErrorMidstream { after_events } => Ending::InBandError { after: *after_events },
            _ => Ending::Complete,
        }
    }
}

/// Pause between the last delivered event and the abort, so hyper flushes those events to the
/// socket first (an error from the body makes hyper drop whatever it still buffers).
const FLUSH_BEFORE_DIE: Duration = Duration::from_millis(10);

struct Gen<F> {
    next: u32,
    limit: u32,
    plan_delay: Duration,
    pause: Option<(u32, Duration)>,
    framing: Framing,
    ending: Ending,
    make: F,
    done: bool,
}

/// A streaming body of `plan.chunks` events, `make(i)` giving the JSON of event `i`.
///
/// With `Ending::Die` the body fails after the events, which makes hyper close the
/// connection without the final zero-length chunk: the client sees a truncated body.
pub(crate) fn event_body<F>(plan: &StreamPlan, framing: Framing, ending: Ending, make: F) -> Body
where
    F: FnMut(u32) -> Vec<u8> + Send + 'static,
{
    let limit = match ending {
        Ending::Complete => plan.chunks,
        Ending::Die { after } | Ending::InBandError { after } => after.min(plan.chunks),
    };
    let gen = Gen { next: 0, limit, plan_delay: plan.delay, pause: plan.pause, framing, ending, make, done: false };
    Body::from_stream(futures_util::stream::unfold(gen, |mut g| async move {
        if g.done {
            return None;
        }
        let is_tail = g.next >= g.limit;
        if g.next > 0 && !g.plan_delay.is_zero() && !(is_tail && matches!(g.ending, Ending::Complete)) {
            tokio::time::sleep(g.plan_delay).await;
        }
        if let Some((after, pause)) = g.pause {
            if g.next == after && !is_tail {
                tokio::time::sleep(pause).await;
            }
        }
        if !is_tail {
            let i = g.next;
            g.next += 1;
            let json = (g.make)(i);
            return Some((Ok(g.framing.event(i, &json)), g));
        }
        g.done = true;
        let item = match g.ending {
            Ending::Complete => {
                let tail = g.framing.tail();
                if tail.is_empty() {
                    return None;
                }
                Ok(Bytes::from_static(tail))
            }
            Ending::Die { .. } => {
                tokio::time::sleep(FLUSH_BEFORE_DIE).await;
                Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "mock-gemini: die_midstream"))
            }
            Ending::InBandError { .. } => {
                let err = ApiError::overloaded().body();
                let mut out = g.framing.event(g.next, &err).to_vec();
                if g.framing == Framing::JsonArray {
                    out.extend_from_slice(b"]");
                }
                Ok(Bytes::from(out))
            }
        };
        Some((item, g))
    }))
}
