//! The floor: a bare TCP echo server, one thread per connection, TCP_NODELAY, writing back
//! whatever it reads. What a server cannot beat over loopback on the same machine.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use anyhow::{Context, Result};

/// Binds `bind` and calls `ready` with the bound address (port 0 picks a free one).
pub fn bind(bind: &str) -> Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(bind).with_context(|| format!("cannot bind {bind}"))?;
    let addr = l.local_addr()?;
    Ok((l, addr))
}

/// Accepts connections forever, echoing each on its own thread.
pub fn serve(listener: TcpListener) -> Result<()> {
    for conn in listener.incoming() {
        match conn {
            Ok(s) => {
                std::thread::spawn(move || echo(s));
            }
            Err(e) => eprintln!("echo: accept failed: {e}"),
        }
    }
    Ok(())
}

/// Echoes one connection until it closes.
fn echo(mut s: TcpStream) {
    if s.set_nodelay(true).is_err() {
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{flood, pingpong_echo, FloodParams, Target};
    use std::time::Duration;

    #[test]
    fn pingpong_and_flood_against_the_echo_server() {
        let (l, addr) = bind("127.0.0.1:0").unwrap();
        std::thread::spawn(move || serve(l));
        let addr = addr.to_string();
        let r = pingpong_echo(&addr, 200, 10, 100).unwrap();
        assert_eq!(r.latency.count, 100);
        assert_eq!(r.counts.echo, 100);
        assert_eq!(r.message_size, 200);
        assert!(r.latency.p50_ns > 0);
        let f = flood(
            &addr,
            &Target::Echo { size: 200 },
            &FloodParams {
                sessions: 2,
                rate: 2_000.0,
                duration: Duration::from_millis(200),
                warmup: Duration::from_millis(50),
                drain: Duration::from_secs(2),
                cancel_after: false,
                tick: Duration::ZERO,
            },
        )
        .unwrap();
        assert_eq!(f.scheduled, 500);
        assert_eq!(f.answered, 500);
        assert_eq!(f.counts.echo, 500);
        assert_eq!(f.latency.count, 400, "warm-up answers are not timed");
    }
}
