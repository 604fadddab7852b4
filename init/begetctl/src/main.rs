//! `begetctl` and `param` (the same binary; `param ...` is `begetctl param ...`):
//! OpenHarmony's command-line tools for parameters, services, boot events
//! and power, talking to init's parameter service.

mod cli;

use std::process::ExitCode;
use std::time::Duration;

use accord_param::client::Client;
use cli::Command;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let prog = argv.first().map(|a| a.rsplit('/').next().unwrap_or(a).to_owned()).unwrap_or_else(|| "begetctl".into());
    let tool = if prog == "param" { "param" } else { "begetctl" };
    let cmd = match cli::parse(&prog, &argv[1.min(argv.len())..]) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("{tool}: {msg}");
            eprintln!("{}", cli::usage(tool));
            return ExitCode::from(2);
        }
    };
    if let Command::Help = cmd {
        println!("{}", cli::usage(tool));
        return ExitCode::SUCCESS;
    }
    match run(cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{tool}: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn print_entries(entries: &[(String, String)], values: bool) {
    for (k, v) in entries {
        if values {
            println!("{k} = {v}");
        } else {
            println!("{k}");
        }
    }
}

fn run(cmd: Command) -> anyhow::Result<()> {
    let client = Client::connect()?;
    match cmd {
        Command::Help => {}
        Command::Ls { prefix, values } => print_entries(&client.list(&prefix)?, values),
        Command::Get { name: None } | Command::Dump => print_entries(&client.list("")?, true),
        Command::Get { name: Some(n) } => println!("{}", client.get(&n)?),
        Command::Set { name, value } => {
            client.set(&name, &value)?;
            println!("Set parameter {name} {value} success");
        }
        Command::Wait { name, pattern, timeout_s } => {
            client.wait(&name, &pattern, Duration::from_secs(timeout_s))?;
            println!("Wait parameter {name} success");
        }
        Command::Watch { prefix } => {
            for ev in client.watch(&prefix)? {
                let (k, v) = ev?;
                println!("{k} = {v}");
            }
        }
        Command::Save => client.save()?,
        Command::ServiceStart(name) => client.set("ohos.ctl.start", &name)?,
        Command::ServiceStop(name) => client.set("ohos.ctl.stop", &name)?,
        Command::DumpService(name) => {
            let services = client.dump_services(name.as_deref())?;
            if services.is_empty() {
                anyhow::bail!("no service named {}", name.unwrap_or_default());
            }
            println!("{:<20} {:<10} {:>7} {:>8} {:<9} {:<8} path", "name", "state", "pid", "restarts", "mode", "critical");
            for s in services {
                println!(
                    "{:<20} {:<10} {:>7} {:>8} {:<9} {:<8} {}",
                    s.name,
                    s.state,
                    s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                    s.restarts,
                    s.start_mode,
                    if s.critical { "yes" } else { "no" },
                    s.path.join(" ")
                );
            }
        }
        Command::BootEvent(enable) => client.set("persist.init.bootevent.enable", if enable { "true" } else { "false" })?,
        Command::Reboot(mode) => {
            let v = match mode {
                None => "reboot".to_owned(),
                Some(m) => format!("reboot,{m}"),
            };
            client.set("ohos.startup.powerctrl", &v)?;
        }
    }
    Ok(())
}
