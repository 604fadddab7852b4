//! Argument parsing, kept apart from I/O so it can be tested.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Ls { prefix: String, values: bool },
    Get { name: Option<String> },
    Set { name: String, value: String },
    Wait { name: String, pattern: String, timeout_s: u64 },
    Watch { prefix: String },
    Dump,
    Save,
    ServiceStart(String),
    ServiceStop(String),
    DumpService(Option<String>),
    BootEvent(bool),
    Reboot(Option<String>),
}

pub fn usage(tool: &str) -> String {
    let p = if tool == "param" { "param" } else { "begetctl param" };
    let mut s = format!(
        "usage:\n  {p} ls [-r] [prefix]        list names (-r: with values)\n  {p} get [name]             print a value (all when no name)\n  {p} set <name> <value>\n  {p} wait <name> [pattern] [timeout_s]   default pattern *, timeout 30\n  {p} watch <prefix>         print changes until interrupted\n  {p} dump                   every parameter\n  {p} save                   write persist.* now"
    );
    if tool != "param" {
        s.push_str(
            "\n  begetctl service_control start|stop <service>\n  begetctl start_service <service> | stop_service <service>\n  begetctl dump_service all|<service>\n  begetctl bootevent enable|disable\n  begetctl reboot [shutdown|halt|suspend|panic|updater|flashd|charge|bootloader|recovery|loader]",
        );
    }
    s
}

fn one(args: &[String], what: &str) -> Result<String, String> {
    match args {
        [a] => Ok(a.clone()),
        [] => Err(format!("missing {what}")),
        _ => Err(format!("too many arguments after {what}")),
    }
}

fn parse_param(args: &[String]) -> Result<Command, String> {
    let Some((sub, rest)) = args.split_first() else { return Err("missing a param subcommand".into()) };
    match sub.as_str() {
        "ls" => {
            let values = rest.first().is_some_and(|a| a == "-r");
            let rest = if values { &rest[1..] } else { rest };
            match rest {
                [] => Ok(Command::Ls { prefix: String::new(), values }),
                [p] => Ok(Command::Ls { prefix: p.clone(), values }),
                _ => Err("usage: ls [-r] [prefix]".into()),
            }
        }
        "get" => match rest {
            [] => Ok(Command::Get { name: None }),
            [n] => Ok(Command::Get { name: Some(n.clone()) }),
            _ => Err("usage: get [name]".into()),
        },
        "set" => match rest {
            [n, v @ ..] if !v.is_empty() => Ok(Command::Set { name: n.clone(), value: v.join(" ") }),
            _ => Err("usage: set <name> <value>".into()),
        },
        "wait" => {
            let (name, pattern, timeout) = match rest {
                [n] => (n, "*".to_owned(), None),
                [n, p] => (n, p.clone(), None),
                [n, p, t] => (n, p.clone(), Some(t)),
                _ => return Err("usage: wait <name> [pattern] [timeout_s]".into()),
            };
            let timeout_s = match timeout {
                None => 30,
                Some(t) => t.parse().map_err(|_| format!("timeout {t:?} is not a number of seconds"))?,
            };
            Ok(Command::Wait { name: name.clone(), pattern, timeout_s })
        }
        "watch" => Ok(Command::Watch { prefix: one(rest, "a prefix")? }),
        "dump" if rest.is_empty() => Ok(Command::Dump),
        "save" if rest.is_empty() => Ok(Command::Save),
        other => Err(format!("unknown param subcommand {other:?}")),
    }
}

/// Parses arguments after the program name. `prog` is argv[0]'s base name:
/// run as `param`, the arguments are param's.
pub fn parse(prog: &str, args: &[String]) -> Result<Command, String> {
    if args.first().is_some_and(|a| a == "-h" || a == "--help" || a == "help") {
        return Ok(Command::Help);
    }
    if prog == "param" {
        return parse_param(args);
    }
    let Some((sub, rest)) = args.split_first() else { return Err("missing a command".into()) };
    match sub.as_str() {
        "param" => parse_param(rest),
        "service_control" => match rest {
            [op, name] if op == "start" => Ok(Command::ServiceStart(name.clone())),
            [op, name] if op == "stop" => Ok(Command::ServiceStop(name.clone())),
            _ => Err("usage: service_control start|stop <service>".into()),
        },
        "start_service" => Ok(Command::ServiceStart(one(rest, "a service name")?)),
        "stop_service" => Ok(Command::ServiceStop(one(rest, "a service name")?)),
        "dump_service" => {
            let n = one(rest, "all or a service name")?;
            Ok(Command::DumpService(if n == "all" { None } else { Some(n) }))
        }
        "bootevent" => match one(rest, "enable or disable")?.as_str() {
            "enable" => Ok(Command::BootEvent(true)),
            "disable" => Ok(Command::BootEvent(false)),
            other => Err(format!("bootevent takes enable or disable, not {other:?}")),
        },
        "reboot" => match rest {
            [] => Ok(Command::Reboot(None)),
            [m] if REBOOT_MODES.contains(&m.as_str()) => Ok(Command::Reboot(Some(m.clone()))),
            [m] => Err(format!("unknown reboot mode {m:?}; init knows {}", REBOOT_MODES.join(", "))),
            _ => Err("usage: reboot [mode]".into()),
        },
        other => Err(format!("unknown command {other:?}")),
    }
}

/// `reboot` modes init acts on: power states, then the restart modes it
/// passes to the kernel (reboot(2) RESTART2 with the mode string).
pub const REBOOT_MODES: &[&str] = &["shutdown", "halt", "suspend", "panic", "updater", "flashd", "charge", "bootloader", "recovery", "loader"];

#[cfg(test)]
mod tests {
    use super::*;

    fn p(prog: &str, args: &[&str]) -> Result<Command, String> {
        parse(prog, &args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn param_commands() {
        assert_eq!(p("param", &["get"]), Ok(Command::Get { name: None }));
        assert_eq!(p("param", &["get", "a.b"]), Ok(Command::Get { name: Some("a.b".into()) }));
        assert_eq!(p("begetctl", &["param", "set", "a", "b", "c"]), Ok(Command::Set { name: "a".into(), value: "b c".into() }));
        assert_eq!(p("param", &["ls", "-r", "x."]), Ok(Command::Ls { prefix: "x.".into(), values: true }));
        assert_eq!(p("param", &["wait", "a"]), Ok(Command::Wait { name: "a".into(), pattern: "*".into(), timeout_s: 30 }));
        assert_eq!(p("param", &["wait", "a", "1", "5"]), Ok(Command::Wait { name: "a".into(), pattern: "1".into(), timeout_s: 5 }));
        assert!(p("param", &["wait", "a", "1", "soon"]).is_err());
        assert!(p("param", &["set", "a"]).is_err());
        assert!(p("param", &["frob"]).is_err());
        assert!(p("param", &[]).is_err());
    }

    #[test]
    fn begetctl_commands() {
        assert_eq!(p("begetctl", &["service_control", "start", "x"]), Ok(Command::ServiceStart("x".into())));
        assert_eq!(p("begetctl", &["stop_service", "x"]), Ok(Command::ServiceStop("x".into())));
        assert_eq!(p("begetctl", &["dump_service", "all"]), Ok(Command::DumpService(None)));
        assert_eq!(p("begetctl", &["dump_service", "x"]), Ok(Command::DumpService(Some("x".into()))));
        assert_eq!(p("begetctl", &["bootevent", "disable"]), Ok(Command::BootEvent(false)));
        assert_eq!(p("begetctl", &["reboot"]), Ok(Command::Reboot(None)));
        assert_eq!(p("begetctl", &["reboot", "shutdown"]), Ok(Command::Reboot(Some("shutdown".into()))));
        assert!(p("begetctl", &["reboot", "sideways"]).unwrap_err().contains("init knows shutdown, halt"));
        assert_eq!(p("begetctl", &["reboot", "recovery"]), Ok(Command::Reboot(Some("recovery".into()))));
        assert!(p("begetctl", &["service_control", "pause", "x"]).is_err());
        assert_eq!(p("begetctl", &["--help"]), Ok(Command::Help));
        assert!(p("begetctl", &[]).is_err());
    }
}
