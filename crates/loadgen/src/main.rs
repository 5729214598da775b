//! `portcullis-loadgen`: ping-pong latency and open-loop floods against a FIX server, and the
//! bare TCP echo server and client that measure the floor. See `--help`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use portcullis_loadgen::fix::{Credentials, FixOptions};
use portcullis_loadgen::run::{self, FloodParams, Target};
use portcullis_loadgen::{echo, report};

/// Portcullis load generator: FIX ping-pong and open-loop floods, and a bare TCP echo floor.
#[derive(Debug, Parser)]
#[command(name = "portcullis-loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A bare TCP echo server (thread per connection, TCP_NODELAY): the floor. Prints
    /// `listening: echo ADDR` once bound.
    Echo {
        /// Address to listen on (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: String,
    },
    /// Logs on `--sessions` FIX sessions and keeps them idle (heartbeats only) for
    /// `--hold-secs`, then logs them out: the server's memory per idle session is its resident
    /// size with them logged on, less before. Prints `idle: N sessions logged on` once they all
    /// are.
    Idle {
        /// Server address, HOST:PORT.
        #[arg(long)]
        addr: String,
        /// Sessions to log on (session n is SenderCompID --sender with {n} = n).
        #[arg(long, default_value_t = 16)]
        sessions: usize,
        /// Seconds to stay logged on.
        #[arg(long, default_value_t = 3.0)]
        hold_secs: f64,
        /// Seconds session 1 stays logged on alone before the others log on (0: none).
        #[arg(long, default_value_t = 0.0)]
        first_alone_secs: f64,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Closed loop: one order at a time, timing each round trip.
    Pingpong {
        /// Server address, HOST:PORT.
        #[arg(long)]
        addr: String,
        /// Sessions (only 1 is supported: a ping-pong is one conversation).
        #[arg(long, default_value_t = 1)]
        sessions: usize,
        /// Round trips timed.
        #[arg(long, default_value_t = 10_000)]
        count: u64,
        /// Round trips before timing starts.
        #[arg(long, default_value_t = 1_000)]
        warmup: u64,
        /// Cancel each acknowledged order (not timed), to keep the book small.
        #[arg(long)]
        cancel_after: bool,
        #[command(flatten)]
        target: TargetArgs,
        /// Print the result as JSON on stdout (the table goes to stderr).
        #[arg(long)]
        json: bool,
    },
    /// Open loop: every session sends on a fixed schedule; latency counts from the intended send
    /// time, so a stall counts against every order it delays.
    Flood {
        /// Server address, HOST:PORT.
        #[arg(long)]
        addr: String,
        /// Sessions (connections), each with a sender and a receiver thread.
        #[arg(long, default_value_t = 16)]
        sessions: usize,
        /// Orders per second, all sessions together (ignored with --find-max).
        #[arg(long, default_value_t = 100_000.0)]
        rate: f64,
        /// Seconds measured (per step with --find-max).
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Seconds at the same rate before measuring.
        #[arg(long, default_value_t = 0.5)]
        warmup_secs: f64,
        /// Seconds to wait for the last answers after the last intended send time.
        #[arg(long, default_value_t = 2.0)]
        drain_secs: f64,
        /// Step the rate up (--steps) until p99 ≥ 1 ms, the achieved rate falls under 95 %
        /// of the target, or an order is refused (--attempts runs per step, --patience failed
        /// steps in a row); report the highest rate that passed.
        #[arg(long)]
        find_max: bool,
        /// The rates of --find-max, orders per second, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = run::DEFAULT_STEPS.to_vec())]
        steps: Vec<f64>,
        /// With --find-max: runs at one rate before the step counts as failed (a retry keeps
        /// one stall of a shared machine from failing a step).
        #[arg(long, default_value_t = 2)]
        attempts: u32,
        /// With --find-max: consecutive failed steps that end the search (1: the first).
        #[arg(long, default_value_t = 1)]
        patience: u32,
        /// Cancel each acknowledged order, to keep the book small.
        #[arg(long)]
        cancel_after: bool,
        /// Shortest sleep of the pacing thread, µs: 0 sends every order at its intended time;
        /// more lets orders due meanwhile go out in one write per session, as a batching client
        /// sends them (the wait still counts against the latency).
        #[arg(long, default_value_t = 0)]
        tick_us: u64,
        #[command(flatten)]
        target: TargetArgs,
        /// Print the result as JSON on stdout (the table goes to stderr).
        #[arg(long)]
        json: bool,
    },
    /// Print the size in bytes of the NewOrderSingle the FIX options encode.
    OrderSize {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Print the comparison table of scripts/bench.sh from the JSON results in a directory
    /// (pingpong-fix.json, pingpong-echo.json, flood-{fix,echo}-{1,16}.json).
    Table {
        /// Directory holding the results.
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Side {
    Buy,
    Sell,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Tif {
    Day,
    Gtc,
    Ioc,
    Fok,
}

/// Who to talk to and, for FIX, what to send.
#[derive(Debug, Args)]
struct TargetArgs {
    /// Speak FIX (the default).
    #[arg(long, conflicts_with_all = ["echo", "ws"])]
    fix: bool,
    /// Speak the WebSocket API (ws://ADDR/ws-api/v3): `session.logon` with the key, then
    /// `order.place` LIMIT orders with the symbol, side, quantity, price and time in force.
    #[arg(long, conflicts_with = "echo")]
    ws: bool,
    /// Talk to the echo server instead: messages of --size bytes.
    #[arg(long)]
    echo: bool,
    /// Echo message size in bytes (default: the size of the FIX order these options encode).
    #[arg(long)]
    size: Option<usize>,
    /// BeginString(8).
    #[arg(long, default_value = "FIX.4.4")]
    begin: String,
    /// Our SenderCompID(49); `{n}` becomes the session number, two digits (LG{n} -> LG01).
    #[arg(long, default_value = "LG{n}")]
    sender: String,
    /// Our TargetCompID(56) (the server's SenderCompID); `{n}` as for --sender.
    #[arg(long, default_value = "BENCH")]
    target: String,
    /// HeartBtInt(108), seconds.
    #[arg(long, default_value_t = 30)]
    heartbeat: u32,
    /// API key id: sign the Logon (Username 553, RawData 95/96).
    #[arg(long, requires = "secret")]
    key_id: Option<String>,
    /// API key secret (as `portcullis keys create` prints it).
    #[arg(long, requires = "key_id")]
    secret: Option<String>,
    /// File with `{"key_id": ..., "secret": ...}` (the output of `portcullis keys create
    /// --json`), instead of --key-id/--secret.
    #[arg(long, conflicts_with_all = ["key_id", "secret"])]
    key_file: Option<PathBuf>,
    /// Sign every order (SignatureLength 93 / Signature 89); needs a key.
    #[arg(long)]
    sign_messages: bool,
    /// Symbol(55).
    #[arg(long, default_value = "BTC-PERP")]
    symbol: String,
    /// Side(54).
    #[arg(long, value_enum, default_value = "buy")]
    side: Side,
    /// OrderQty(38).
    #[arg(long, default_value = "1")]
    qty: String,
    /// Price(44): far enough from the market that the order rests.
    #[arg(long, default_value = "1000")]
    price: String,
    /// TimeInForce(59).
    #[arg(long, value_enum, default_value = "gtc")]
    tif: Tif,
    /// Account(1), if the server wants one.
    #[arg(long)]
    account: Option<String>,
}

impl TargetArgs {
    fn fix_options(&self) -> Result<FixOptions> {
        let credentials = match (&self.key_file, &self.key_id, &self.secret) {
            (Some(f), _, _) => Some(Credentials::from_json(
                &std::fs::read_to_string(f)
                    .with_context(|| format!("reading the key file {}", f.display()))?,
            )?),
            (None, Some(id), Some(secret)) => Some(Credentials {
                key_id: id.clone(),
                secret: secret.clone(),
            }),
            _ => None,
        };
        if self.sign_messages && credentials.is_none() {
            bail!("--sign-messages needs a key (--key-id/--secret or --key-file)");
        }
        if !matches!(self.begin.as_str(), "FIX.4.2" | "FIX.4.4" | "FIXT.1.1") {
            bail!("--begin must be FIX.4.2, FIX.4.4 or FIXT.1.1");
        }
        Ok(FixOptions {
            begin_string: self.begin.clone(),
            sender: self.sender.clone(),
            target: self.target.clone(),
            heartbeat_secs: self.heartbeat,
            symbol: self.symbol.clone(),
            side: match self.side {
                Side::Buy => b'1',
                Side::Sell => b'2',
            },
            qty: self.qty.clone(),
            price: self.price.clone(),
            time_in_force: match self.tif {
                Tif::Day => b'0',
                Tif::Gtc => b'1',
                Tif::Ioc => b'3',
                Tif::Fok => b'4',
            },
            account: self.account.clone(),
            credentials,
            sign_messages: self.sign_messages,
        })
    }

    fn target(&self) -> Result<Target> {
        let opts = self.fix_options()?;
        Ok(if self.ws {
            let Some(credentials) = opts.credentials.clone() else {
                bail!("--ws needs a key (--key-id/--secret or --key-file) for session.logon");
            };
            Target::Ws(Box::new(portcullis_loadgen::ws::WsOptions {
                symbol: self.symbol.clone(),
                side: match self.side {
                    Side::Buy => "BUY",
                    Side::Sell => "SELL",
                },
                qty: self.qty.clone(),
                price: self.price.clone(),
                tif: match self.tif {
                    Tif::Gtc => "GTC",
                    Tif::Ioc => "IOC",
                    Tif::Fok => "FOK",
                    Tif::Day => bail!("--ws: the dialect has no DAY time in force"),
                },
                credentials,
            }))
        } else if self.echo {
            Target::Echo {
                size: self.size.unwrap_or_else(|| run::order_size(&opts)),
            }
        } else {
            Target::Fix(Box::new(opts))
        })
    }
}

/// Prints the result: JSON on stdout and the text on stderr, or just the text on stdout.
fn emit(json: Option<serde_json::Value>, text: &str) {
    match json {
        Some(v) => {
            eprint!("{text}");
            println!("{v}");
        }
        None => print!("{text}"),
    }
}

fn secs(s: f64, what: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(s)
        .with_context(|| format!("{what} must be a number of seconds ≥ 0"))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Echo { bind } => {
            let (listener, addr) = echo::bind(&bind)?;
            println!("listening: echo {addr}");
            echo::serve(listener)
        }
        Command::Idle {
            addr,
            sessions,
            hold_secs,
            first_alone_secs,
            target,
        } => {
            let Target::Fix(o) = target.target()? else {
                bail!("idle sessions are FIX sessions");
            };
            if !(0.0..=3600.0).contains(&hold_secs) {
                bail!("--hold-secs must be between 0 and 3600");
            }
            if !(0.0..=3600.0).contains(&first_alone_secs) {
                bail!("--first-alone-secs must be between 0 and 3600");
            }
            run::idle_fix(
                &addr,
                &o,
                sessions,
                Duration::from_secs_f64(first_alone_secs),
                Duration::from_secs_f64(hold_secs),
            )
        }
        Command::Pingpong {
            addr,
            sessions,
            count,
            warmup,
            cancel_after,
            target,
            json,
        } => {
            if sessions != 1 {
                bail!("a ping-pong runs over one session (use flood for more)");
            }
            let r = match target.target()? {
                Target::Fix(o) => run::pingpong_fix(&addr, &o, warmup, count, cancel_after)?,
                Target::Echo { size } => run::pingpong_echo(&addr, size, warmup, count)?,
                Target::Ws(o) => {
                    if cancel_after {
                        bail!("--cancel-after is FIX only");
                    }
                    portcullis_loadgen::ws::pingpong_ws(&addr, &o, warmup, count)?
                }
            };
            emit(json.then(|| r.to_json()), &report::pingpong_text(&r));
            Ok(())
        }
        Command::Flood {
            addr,
            sessions,
            rate,
            duration,
            warmup_secs,
            drain_secs,
            find_max,
            steps,
            attempts,
            patience,
            cancel_after,
            tick_us,
            target,
            json,
        } => {
            let t = target.target()?;
            if std::iter::once(&rate)
                .chain(&steps)
                .any(|r| !r.is_finite() || *r <= 0.0)
            {
                bail!("--rate and --steps must be positive numbers of orders per second");
            }
            if sessions == 0 {
                bail!("--sessions must be at least 1");
            }
            let p = FloodParams {
                sessions,
                rate,
                duration: secs(duration, "--duration")?,
                warmup: secs(warmup_secs, "--warmup-secs")?,
                drain: secs(drain_secs, "--drain-secs")?,
                cancel_after,
                tick: Duration::from_micros(tick_us),
            };
            let header = format!(
                "flood {}: {sessions} session(s), {duration} s measured after {warmup_secs} s warm-up\n{}\n",
                t.name(),
                report::flood_header()
            );
            // Steps are shown as they finish (on stderr when stdout carries JSON).
            let show = |s: &str| {
                if json {
                    eprint!("{s}");
                } else {
                    print!("{s}");
                }
            };
            show(&header);
            if find_max {
                let search = run::Search {
                    steps,
                    attempts,
                    patience,
                };
                let m = run::find_max(&addr, &t, &p, &search, |r| {
                    show(&format!("{}\n", report::flood_line(r)))
                })?;
                let summary = match m.best() {
                    Some(b) => format!(
                        "max rate with p99 < 1 ms: {:.0} orders/s (achieved {:.0}/s, p99 {})\n",
                        b.rate,
                        b.achieved,
                        portcullis_loadgen::hist::fmt_ns(b.latency.p99_ns)
                    ),
                    None => {
                        "no rate passed (p99 < 1 ms at ≥ 95 % of the rate, none refused)\n".into()
                    }
                };
                show(&summary);
                if json {
                    println!("{}", m.to_json(t.name(), sessions));
                }
            } else {
                let r = run::flood(&addr, &t, &p)?;
                show(&format!("{}\n", report::flood_line(&r)));
                if json {
                    println!("{}", r.to_json());
                }
            }
            Ok(())
        }
        Command::OrderSize { target } => {
            println!("{}", run::order_size(&target.fix_options()?));
            Ok(())
        }
        Command::Table { dir } => {
            print!("{}", report::comparison_table(&dir)?);
            Ok(())
        }
    }
}
