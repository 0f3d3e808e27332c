//! steady-load: open-loop HTTP/1.1 load on a steady schedule, for bench/run's second reading of
//! the open-loop latency.
//!
//! Request i is due at `start + i / rate`, and its latency counts from that due time to the
//! last byte of its response, whatever delayed it: this process waking late, all connections
//! being busy, or the target (wrk2's rule). One thread and a fixed set of keep-alive
//! connections, driven by epoll, with a timerfd that wakes it at the next due time rounded up
//! to a tick (100 µs by default): requests go out at most a tick late, a couple at a time at
//! the benchmark's rates. Why it exists: oha's pacing task sleeps on tokio's 1 ms timer and
//! releases a dozen requests at once at 25,000/s, and counts latency from that release, which
//! at the benchmark's highest rate puts as much into the p99 as the proxy under test
//! (bench/results/profile.md).
//!
//! Prints one JSON object on stdout; see `Report::json` for the fields.

mod http;
mod stats;
mod sys;

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::process::ExitCode;

const TIMER_TOKEN: u64 = u64::MAX;
const NS: f64 = 1e9;

struct Args {
    host: String,
    path: String,
    method: String,
    headers: Vec<String>,
    body: Vec<u8>,
    rate: f64,
    seconds: f64,
    warmup: f64,
    conns: usize,
    grace: f64,
    tick_ns: u64,
}

fn usage() -> String {
    "usage: steady-load --url http://HOST:PORT/PATH --rate REQ_PER_S --seconds S [--warmup S] [--conns N] \
     [--method POST] [-H 'name: value']... [-d BODY | --body-file PATH] [--grace S] [--tick-us US]"
        .into()
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        host: String::new(),
        path: String::new(),
        method: "GET".into(),
        headers: Vec::new(),
        body: Vec::new(),
        rate: 0.0,
        seconds: 0.0,
        warmup: 1.0,
        conns: 64,
        grace: 2.0,
        tick_ns: 100_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value\n{}", usage()));
        let number = |v: String| v.parse::<f64>().map_err(|_| format!("{flag}: not a number: {v}"));
        match flag.as_str() {
            "--url" => {
                let url = value()?;
                let rest = url.strip_prefix("http://").ok_or("--url: only http:// URLs")?;
                let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                a.host = host.to_string();
                a.path = if path.is_empty() { "/".into() } else { path.to_string() };
            }
            "--rate" => a.rate = number(value()?)?,
            "--seconds" => a.seconds = number(value()?)?,
            "--warmup" => a.warmup = number(value()?)?,
            "--grace" => a.grace = number(value()?)?,
            "--tick-us" => a.tick_ns = (number(value()?)? * 1000.0) as u64,
            "--conns" => a.conns = value()?.parse().map_err(|_| "--conns: not a count")?,
            "--method" => a.method = value()?,
            "-H" => a.headers.push(value()?),
            "-d" => a.body = value()?.into_bytes(),
            "--body-file" => {
                let path = value()?;
                a.body = std::fs::read(&path).map_err(|e| format!("--body-file {path}: {e}"))?;
            }
            "-h" | "--help" => return Err(usage()),
            other => return Err(format!("unknown argument {other}\n{}", usage())),
        }
    }
    if a.host.is_empty() || a.rate <= 0.0 || a.seconds <= 0.0 || a.conns == 0 {
        return Err(usage());
    }
    Ok(a)
}

/// One request from due time to answer.
struct Record {
    due: u64,
    sent: u64,
    done: u64,
    status: u16,
}

struct Conn {
    stream: TcpStream,
    /// Due and send time of the request on the wire, if any.
    inflight: Option<(u64, u64)>,
    /// How much of the request is written, while a write is unfinished.
    written: Option<usize>,
    /// Whether epoll also watches it for writability (only while a write is unfinished).
    watching_out: bool,
    buf: Vec<u8>,
}

impl Conn {
    fn new(stream: TcpStream) -> Self {
        Self { stream, inflight: None, written: None, watching_out: false, buf: Vec::with_capacity(4096) }
    }
}

fn connect(host: &str) -> io::Result<TcpStream> {
    let s = TcpStream::connect(host)?;
    s.set_nodelay(true)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

#[derive(Default)]
struct Errors {
    count: u64,
    kinds: std::collections::BTreeMap<String, u64>,
}

impl Errors {
    fn add(&mut self, what: impl Into<String>) {
        self.count += 1;
        *self.kinds.entry(what.into()).or_default() += 1;
    }
}

struct Generator {
    args: Args,
    request: Vec<u8>,
    epoll: sys::Epoll,
    timer: sys::Timer,
    conns: Vec<Conn>,
    idle: VecDeque<usize>,
    /// Due times of requests released but not yet on a connection.
    backlog: VecDeque<u64>,
    records: Vec<Record>,
    errors: Errors,
    notes: std::collections::BTreeMap<String, u64>,
    max_backlog: usize,
    /// Where reads land before they are appended to a connection's buffer.
    scratch: Box<[u8]>,
}

impl Generator {
    fn new(args: Args) -> io::Result<Self> {
        let request = http::request(&args.method, &args.host, &args.path, &args.headers, &args.body);
        let epoll = sys::Epoll::new()?;
        let timer = sys::Timer::new()?;
        epoll.add(timer.raw_fd(), TIMER_TOKEN, libc::EPOLLIN as u32)?;
        let mut conns = Vec::with_capacity(args.conns);
        for i in 0..args.conns {
            let stream = connect(&args.host)?;
            epoll.add(stream.as_raw_fd(), i as u64, libc::EPOLLIN as u32)?;
            conns.push(Conn::new(stream));
        }
        let expected = (args.rate * args.seconds) as usize + 16;
        Ok(Self {
            request,
            epoll,
            timer,
            idle: (0..args.conns).collect(),
            conns,
            backlog: VecDeque::new(),
            records: Vec::with_capacity(expected),
            errors: Errors::default(),
            notes: Default::default(),
            max_backlog: 0,
            scratch: vec![0; 64 * 1024].into_boxed_slice(),
            args,
        })
    }

    /// Puts the request due at `due` on connection `c`.
    fn send(&mut self, c: usize, due: u64) {
        let now = sys::now_ns();
        self.conns[c].inflight = Some((due, now));
        self.conns[c].written = Some(0);
        self.write_more(c);
    }

    fn write_more(&mut self, c: usize) {
        let Some(from) = self.conns[c].written else { return };
        let conn = &mut self.conns[c];
        let wrote = match conn.stream.write(&self.request[from..]) {
            Ok(n) => from + n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => from,
            Err(e) => return self.fail(c, format!("write: {}", e.kind())),
        };
        let done = wrote == self.request.len();
        conn.written = (!done).then_some(wrote);
        // A whole write is the usual case: epoll's interest changes only around a partial one.
        if done == conn.watching_out {
            conn.watching_out = !done;
            let events = if done { libc::EPOLLIN } else { libc::EPOLLIN | libc::EPOLLOUT };
            let _ = self.epoll.modify(conn.stream.as_raw_fd(), c as u64, events as u32);
        }
    }

    /// Reads what connection `c` has; completes its request when the response is whole. One
    /// read per readiness: epoll is level-triggered, so whatever is left is reported again.
    fn read(&mut self, c: usize) {
        match self.conns[c].stream.read(&mut self.scratch[..]) {
            Ok(0) => return self.fail(c, "connection closed by the target"),
            Ok(n) => self.conns[c].buf.extend_from_slice(&self.scratch[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => return self.fail(c, format!("read: {}", e.kind())),
        }
        match http::parse(&self.conns[c].buf) {
            http::Parsed::Incomplete => {}
            http::Parsed::Invalid(why) => self.fail(c, why),
            http::Parsed::Done { status, len, close } => {
                let done = sys::now_ns();
                let conn = &mut self.conns[c];
                let Some((due, sent)) = conn.inflight.take() else {
                    return self.fail(c, "response to no request");
                };
                conn.buf.drain(..len);
                self.records.push(Record { due, sent, done, status });
                if close || !conn.buf.is_empty() {
                    // Answered, but the connection cannot carry the next request.
                    let why = if close { "target closed the connection after a response" } else { "bytes after a response" };
                    self.note(why.to_string());
                    self.reconnect(c);
                } else {
                    self.idle.push_back(c);
                }
            }
        }
    }

    /// Counts the request on `c`, if there is one, as failed, and replaces the connection (a
    /// target closing an idle keep-alive connection is noted, not counted).
    fn fail(&mut self, c: usize, why: impl Into<String>) {
        let why = why.into();
        if self.conns[c].inflight.take().is_some() {
            self.errors.add(why);
        } else {
            self.note(format!("idle connection: {why}"));
        }
        self.reconnect(c);
    }

    /// Counts an event that cost no request (shown as `notes`).
    fn note(&mut self, what: String) {
        *self.notes.entry(what).or_default() += 1;
    }

    /// Opens a new connection in place of `c` and makes it idle; a failed connect leaves `c`
    /// out of use (the others carry the load) and counts as an error.
    fn reconnect(&mut self, c: usize) {
        self.idle.retain(|&i| i != c);
        let _ = self.epoll.delete(self.conns[c].stream.as_raw_fd());
        match connect(&self.args.host) {
            Ok(stream) => {
                if self.epoll.add(stream.as_raw_fd(), c as u64, libc::EPOLLIN as u32).is_ok() {
                    self.conns[c] = Conn::new(stream);
                    self.idle.push_back(c);
                }
            }
            Err(e) => self.errors.add(format!("connect: {}", e.kind())),
        }
    }

    fn in_flight(&self) -> usize {
        self.conns.iter().filter(|c| c.inflight.is_some()).count()
    }

    fn run(&mut self) -> io::Result<Report> {
        let interval = NS / self.args.rate;
        // Connections are open; start the schedule a moment from now.
        let start = sys::now_ns() + 10_000_000;
        let end = start + (self.args.seconds * NS) as u64;
        let give_up = end + (self.args.grace * NS) as u64;
        let due = |i: u64| start + (i as f64 * interval) as u64;
        let cpu0 = sys::cpu_seconds();
        let mut next = 0u64;
        let mut scheduling = true;
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        loop {
            let now = sys::now_ns();
            while scheduling {
                let d = due(next);
                if d >= end {
                    scheduling = false;
                } else if d <= now {
                    self.backlog.push_back(d);
                    next += 1;
                } else {
                    break;
                }
            }
            while !self.backlog.is_empty() && !self.idle.is_empty() {
                let (Some(c), Some(d)) = (self.idle.pop_front(), self.backlog.pop_front()) else { break };
                self.send(c, d);
            }
            self.max_backlog = self.max_backlog.max(self.backlog.len());
            if !scheduling && (self.in_flight() == 0 || now >= give_up) {
                break;
            }
            let timeout = if scheduling {
                // The next due time, rounded up to the tick: a wake-up per request costs the
                // load core more than the requests themselves on a VM (each timer is a trip
                // through the host), so the timer fires at most once a tick and the requests
                // due by then go out together. The wait counts in their latency.
                let tick = self.args.tick_ns.max(1);
                self.timer.arm_at(due(next).div_ceil(tick) * tick)?;
                -1
            } else {
                10
            };
            let n = self.epoll.wait(&mut events, timeout)?;
            for ev in events.iter().take(n) {
                let (token, flags) = (ev.u64, ev.events);
                if token == TIMER_TOKEN {
                    // Re-arming resets it; once the schedule is over, read it quiet instead.
                    if scheduling {
                        self.timer.fired();
                    } else {
                        self.timer.clear();
                    }
                    continue;
                }
                let c = token as usize;
                if flags & libc::EPOLLOUT as u32 != 0 {
                    self.write_more(c);
                }
                if flags & (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 {
                    self.read(c);
                }
            }
        }
        Ok(Report {
            start,
            elapsed_s: (sys::now_ns() - start) as f64 / NS,
            warmup_ns: (self.args.warmup * NS) as u64,
            scheduled: next,
            unsent: self.backlog.len() as u64,
            unfinished: self.in_flight() as u64,
            cpu_s: sys::cpu_seconds() - cpu0,
            max_backlog: self.max_backlog,
        })
    }
}

struct Report {
    start: u64,
    /// From the schedule's start to the last answer (or giving up on it).
    elapsed_s: f64,
    warmup_ns: u64,
    scheduled: u64,
    unsent: u64,
    unfinished: u64,
    cpu_s: f64,
    max_backlog: usize,
}

impl Report {
    fn json(&self, g: &Generator) -> String {
        let ms = |ns: u64| ns as f64 / 1e6;
        let since = self.start + self.warmup_ns;
        let steady: Vec<&Record> = g.records.iter().filter(|r| r.due >= since && r.status == 200).collect();
        let mut latency: Vec<f64> = steady.iter().map(|r| ms(r.done - r.due)).collect();
        let mut send_lag: Vec<f64> = steady.iter().map(|r| ms(r.sent - r.due)).collect();
        latency.sort_by(f64::total_cmp);
        send_lag.sort_by(f64::total_cmp);
        let span = steady.iter().map(|r| r.due).max().map_or(0.0, |last| (last - since) as f64 / NS);
        let mut status: std::collections::BTreeMap<u16, u64> = Default::default();
        for r in &g.records {
            *status.entry(r.status).or_default() += 1;
        }
        let status = status.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect::<Vec<_>>().join(", ");
        let map = |m: &std::collections::BTreeMap<String, u64>| m.iter().map(|(k, v)| format!("{}: {v}", stats::json_string(k))).collect::<Vec<_>>().join(", ");
        let (kinds, notes) = (map(&g.errors.kinds), map(&g.notes));
        let q = [("p50", 0.5), ("p75", 0.75), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999), ("p99.99", 0.9999)];
        format!(
            "{{\"scheduled\": {}, \"answered\": {}, \"status\": {{{status}}}, \"errors\": {}, \"error_detail\": {{{kinds}}}, \"notes\": {{{notes}}}, \
             \"unsent_at_end\": {}, \"unfinished_at_end\": {}, \"elapsed_s\": {:.3}, \"measured\": {{\"requests\": {}, \"seconds\": {:.3}, \"rps\": {:.1}, \
             \"skipped_s\": {}}}, \"latency_ms\": {}, \"send_lag_ms\": {}, \"max_backlog\": {}, \"cpu_s\": {:.3}, \
             \"rate\": {}, \"conns\": {}}}",
            self.scheduled,
            g.records.len(),
            g.errors.count,
            self.unsent,
            self.unfinished,
            self.elapsed_s,
            latency.len(),
            span,
            if span > 0.0 { latency.len() as f64 / span } else { 0.0 },
            g.args.warmup,
            stats::summary_json(&latency, &q),
            stats::summary_json(&send_lag, &q[..4]),
            self.max_backlog,
            self.cpu_s,
            g.args.rate,
            g.args.conns,
        )
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let host = args.host.clone();
    let mut g = match Generator::new(args) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("steady-load: cannot connect to {host}: {e}");
            return ExitCode::from(2);
        }
    };
    match g.run() {
        Ok(report) => {
            println!("{}", report.json(&g));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("steady-load: {e}");
            ExitCode::FAILURE
        }
    }
}
