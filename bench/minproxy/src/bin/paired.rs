//! Paired latency at concurrency 1: one keep-alive connection per target, one request at a
//! time, the targets taken in a fresh random order every cycle. Each target's latencies are
//! gathered over the same seconds, so this VM's drifting speed (which moves whole seconds and
//! minutes of separate `wrk` runs apart) is shared by all of them alike.
//!
//! Usage: paired CYCLES NAME=HOST:PORT/PATH=MODEL ...
//! (e.g. `paired 20000 direct=127.0.0.1:19000/v1/chat/completions=gpt-4o gw=...=route::bench`)
//! Prints one JSON object: per target the latency percentiles in microseconds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

struct Target {
    name: String,
    request: Vec<u8>,
    conn: BufReader<TcpStream>,
    micros: Vec<f64>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: paired CYCLES NAME=HOST:PORT/PATH=MODEL ...";
    let cycles: usize = args.first().ok_or(usage)?.parse()?;
    let mut targets = Vec::new();
    for spec in &args[1..] {
        let mut parts = spec.splitn(3, '=');
        let (name, url, model) = match (parts.next(), parts.next(), parts.next()) {
            (Some(n), Some(u), Some(m)) => (n, u, m),
            _ => return Err(usage.into()),
        };
        let (addr, path) = url.split_at(url.find('/').ok_or(usage)?);
        let body = format!(
            r#"{{"model":"{model}","messages":[{{"role":"user","content":"hello there"}}]}}"#
        );
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        let tcp = TcpStream::connect(addr)?;
        tcp.set_nodelay(true)?;
        targets.push(Target {
            name: name.to_string(),
            request: request.into_bytes(),
            conn: BufReader::new(tcp),
            micros: Vec::with_capacity(cycles),
        });
    }
    if targets.is_empty() {
        return Err(usage.into());
    }
    let mut order: Vec<usize> = (0..targets.len()).collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let warmup = cycles / 10 + 100;
    for cycle in 0..warmup + cycles {
        // Fisher-Yates with xorshift: a fresh order each cycle.
        for i in (1..order.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        for &i in &order {
            let t = &mut targets[i];
            let started = Instant::now();
            t.conn.get_mut().write_all(&t.request)?;
            let status = read_response(&mut t.conn)?;
            let took = started.elapsed().as_secs_f64() * 1e6;
            if status != 200 {
                return Err(format!("{}: status {status}", t.name).into());
            }
            if cycle >= warmup {
                t.micros.push(took);
            }
        }
    }
    let mut out = Vec::new();
    for t in &mut targets {
        t.micros.sort_by(f64::total_cmp);
        let at = |q: f64| t.micros[((t.micros.len() - 1) as f64 * q).round() as usize];
        out.push(format!(
            r#""{}":{{"p50":{:.1},"p90":{:.1},"p99":{:.1},"n":{}}}"#,
            t.name,
            at(0.5),
            at(0.9),
            at(0.99),
            t.micros.len()
        ));
    }
    println!("{{{}}}", out.join(","));
    Ok(())
}

/// Read one response (content-length or chunked body); returns its status.
fn read_response(conn: &mut BufReader<TcpStream>) -> std::io::Result<u16> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut line = String::new();
    conn.read_line(&mut line)?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("status line"))?;
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        if conn.read_line(&mut line)? == 0 {
            return Err(bad("connection closed in the head"));
        }
        let h = line.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':').ok_or_else(|| bad("header line"))?;
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let mut sink = Vec::new();
    if chunked {
        loop {
            line.clear();
            conn.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim_end(), 16).map_err(|_| bad("chunk size"))?;
            sink.resize(size + 2, 0);
            conn.read_exact(&mut sink)?;
            if size == 0 {
                break;
            }
        }
    } else {
        sink.resize(length.ok_or_else(|| bad("no content-length"))?, 0);
        conn.read_exact(&mut sink)?;
    }
    Ok(status)
}
