//! The tests' Consul emulator (tests/support/consul_emulator/) as a program
//! of its own, for `scripts/demo --dcs consul`: no Consul server can be
//! installed on these machines (docs/dcs.md, "Consul (`ConsulDcs`)").
//!
//! It is an EMULATOR of the part of Consul's HTTP API that Patroni and
//! pgpilot use, written from Consul's documentation, not Consul: one agent
//! that is its own only server, in memory (nothing survives a restart), no
//! ACLs, no DNS, no gossip. An example target, so `cargo build` and the
//! package never build it; the code is the tests' module, included here,
//! not a copy.
//!
//!   consul-emulator [--port 8500] [--session-ttl-min SECONDS]
//!
//! Serves on 127.0.0.1:PORT until SIGTERM or SIGINT.

use std::process::ExitCode;
use std::time::Duration;

#[path = "../tests/support/ports.rs"]
#[allow(dead_code)]
mod ports;
#[allow(unused_imports)]
use ports::free_port;

#[path = "../tests/support/consul_emulator/mod.rs"]
#[allow(dead_code)]
mod consul_emulator;

use consul_emulator::{ConsulEmulator, EmulatorConfig};

const USAGE: &str = "usage: consul-emulator [--port PORT] [--session-ttl-min SECONDS]";

struct Args {
    port: u16,
    session_ttl_min: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: 8500,
        session_ttl_min: EmulatorConfig::default().session_ttl_min,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value\n{USAGE}"));
        match a.as_str() {
            "--port" => {
                let v = value("--port")?;
                args.port = v.parse().map_err(|_| format!("--port {v:?}: not a port"))?;
            }
            "--session-ttl-min" => {
                let v = value("--session-ttl-min")?;
                let secs: u64 = v
                    .parse()
                    .map_err(|_| format!("--session-ttl-min {v:?}: not whole seconds"))?;
                args.session_ttl_min = Duration::from_secs(secs);
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(m) => {
            eprintln!("{m}");
            return ExitCode::FAILURE;
        }
    };
    let cfg = EmulatorConfig {
        session_ttl_min: args.session_ttl_min,
        ..EmulatorConfig::default()
    };
    let emulator = match ConsulEmulator::start_on(args.port, cfg) {
        Ok(e) => e,
        Err(e) => {
            eprintln!(
                "consul-emulator: cannot serve on 127.0.0.1:{}: {e}",
                args.port
            );
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "consul-emulator: serving {} -- an EMULATOR of Consul's HTTP API (KV, sessions, \
         agent services and checks) from pgpilot's tests, NOT Consul: one in-memory agent, \
         no ACLs, no DNS; session TTL at least {} s",
        emulator.url(),
        args.session_ttl_min.as_secs()
    );
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("consul-emulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stopped = rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok::<_, std::io::Error>(())
    });
    drop(emulator);
    match stopped {
        Ok(()) => {
            eprintln!("consul-emulator: stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("consul-emulator: {e}");
            ExitCode::FAILURE
        }
    }
}
