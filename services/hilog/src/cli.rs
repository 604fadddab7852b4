//! `hilog`: OpenHarmony's log command. Without options it prints what the
//! buffers hold and follows; `-x` prints and exits. Lines look like
//! OpenHarmony's: `11-30 03:12:45.123   812   815 I C00000/storage: text`
//! (date and time in UTC, pid, tid, level, type letter and domain, tag).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::control::{Client, Filter, Request, Response, Stats};
use crate::ring::Record;
use crate::{Level, LogType};

const USAGE: &str = "\
usage: hilog [options]
  (no option)     print the buffers, then follow new lines
  -x              print and exit
  -a N / -z N     only the first / last N lines (then exit)
  -t TYPE,...     app, core, init, kmsg (default app,core,init)
  -L LEVEL,...    D, I, W, E, F
  -D DOMAIN,...   0x3200 or 12800 (low 20 bits, as printed) or a full domain
  -T TAG,...      tags
  -P PID,...      processes
  -e REGEX        messages matching the expression
  -r              clear the buffers of -t (default app,core)
  -g              show the buffer sizes of -t (default app,core)
  -G SIZE         set them: 64K..16M (B, K or M)
  -s              statistics
  -Q pidon|pidoff turn the per-process flow control on or off
  -p on|off       private fields shown as <private> (on, the default) or
                  with their values (off); root only
  -w start|stop|query  persist the buffers (of -t) to /data/log/hilog:
     -f NAME file names (default hilog), -l SIZE per file (64K..512M,
     default 4M), -n N files kept (2..1000, default 10), -m none|zlib
     (rotated files gzip'd, the default); the job resumes after a reboot
  -h              this help";

#[derive(Debug, Default)]
struct Opts {
    exit: bool,
    head: Option<u64>,
    tail: Option<u64>,
    filter: Filter,
    clear: bool,
    get_size: bool,
    set_size: Option<u64>,
    stats: bool,
    flow: Option<bool>,
    persist: Option<String>,
    spec: crate::persist::Spec,
    privacy: Option<bool>,
}

fn list<T>(v: &str, what: &str, f: impl Fn(&str) -> Option<T>) -> Result<Vec<T>> {
    v.split([',', ' ']).filter(|s| !s.is_empty()).map(|s| f(s).with_context(|| format!("{what} {s:?} is not one hilog knows"))).collect()
}

fn parse_domain(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// `64K`, `2M`, `70000`, `512B` → bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.chars().last()?.to_ascii_uppercase() {
        'K' => (&s[..s.len() - 1], 1024),
        'M' => (&s[..s.len() - 1], 1024 * 1024),
        'G' => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        'B' => (&s[..s.len() - 1], 1),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mul)
}

fn parse(args: &[String]) -> Result<Option<Opts>> {
    let mut o = Opts::default();
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().cloned().with_context(|| format!("{name} needs a value\n{USAGE}"));
        match a.as_str() {
            "-h" | "--help" => return Ok(None),
            "-x" | "--exit" => o.exit = true,
            "-a" | "--head" => o.head = Some(val("-a")?.parse().context("-a takes a number of lines")?),
            "-z" | "--tail" => o.tail = Some(val("-z")?.parse().context("-z takes a number of lines")?),
            "-t" | "--type" => o.filter.types.extend(list(&val("-t")?, "type", LogType::parse)?),
            "-L" | "--level" => o.filter.levels.extend(list(&val("-L")?, "level", Level::parse)?),
            "-D" | "--domain" => o.filter.domains.extend(list(&val("-D")?, "domain", parse_domain)?),
            "-T" | "--tag" => o.filter.tags.extend(list(&val("-T")?, "tag", |s| Some(s.to_owned()))?),
            "-P" | "--pid" => o.filter.pids.extend(list(&val("-P")?, "pid", |s| s.parse::<u32>().ok())?),
            "-e" | "--regex" => o.filter.regex = Some(val("-e")?),
            "-r" => o.clear = true,
            "-g" => o.get_size = true,
            "-G" | "--buffer-size" => {
                let v = val("-G")?;
                o.set_size = Some(parse_size(&v).with_context(|| format!("-G {v:?}: not a size (64K..16M)"))?);
            }
            "-s" | "--statistics" => o.stats = true,
            "-Q" => match val("-Q")?.as_str() {
                "pidon" => o.flow = Some(true),
                "pidoff" => o.flow = Some(false),
                v => bail!("-Q {v:?}: pidon or pidoff (domain flow control is not implemented)"),
            },
            "-w" | "--write" => match val("-w")?.as_str() {
                v @ ("start" | "stop" | "query") => o.persist = Some(v.to_owned()),
                v => bail!("-w {v:?}: start, stop or query"),
            },
            "-f" | "--filename" => o.spec.name = val("-f")?,
            "-l" | "--length" => {
                let v = val("-l")?;
                o.spec.file_size = parse_size(&v).with_context(|| format!("-l {v:?}: not a size"))?;
            }
            "-n" | "--number" => o.spec.files = val("-n")?.parse().context("-n takes a number of files")?,
            "-m" | "--stream" => match val("-m")?.as_str() {
                "none" => o.spec.compress = false,
                "zlib" | "gzip" => o.spec.compress = true,
                v => bail!("-m {v:?}: none or zlib"),
            },
            "-p" | "--privacy" => match val("-p")?.as_str() {
                "on" => o.privacy = Some(true),
                "off" => o.privacy = Some(false),
                v => bail!("-p {v:?}: on or off"),
            },
            "-k" | "-S" | "-j" | "-v" | "-b" => {
                bail!("hilog {a} is not implemented yet (the kernel switch, job ids and output formats come later)")
            }
            other => bail!("unknown option {other:?}\n{USAGE}"),
        }
    }
    Ok(Some(o))
}

fn control_path() -> PathBuf {
    std::env::var_os("ACCORD_HILOG_CONTROL").map(PathBuf::from).unwrap_or_else(|| crate::CONTROL_SOCKET.into())
}

/// Days since the epoch → (year, month, day), proleptic Gregorian.
pub(crate) fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Control characters (but tabs) shown as `\xNN`, so a message cannot
/// move the terminal's cursor or fake a line of its own.
fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() && c != '\t') {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() && c != '\t' {
            use std::fmt::Write as _;
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// One record as `hilog` prints it (no final newline). A message of
/// several lines prints as several lines, each with the record's header,
/// so none can pass for another process's line.
pub fn format_record(r: &Record) -> String {
    let secs = (r.time_ns / 1_000_000_000) as i64;
    let ms = (r.time_ns / 1_000_000) % 1000;
    let (_, mo, d) = civil(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    let head = format!(
        "{mo:02}-{d:02} {:02}:{:02}:{:02}.{ms:03} {:>5} {:>5} {} {}{:05X}/{}: ",
        t / 3600,
        t / 60 % 60,
        t % 60,
        r.pid,
        r.tid,
        r.level.letter(),
        r.ty.letter(),
        r.domain & 0xFFFFF,
        escape_controls(&r.tag),
    );
    let mut out = String::with_capacity(head.len() + r.msg.len());
    for (i, line) in r.msg.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&head);
        out.push_str(&escape_controls(line.strip_suffix('\r').unwrap_or(line)));
    }
    out
}

fn print_stats(s: &Stats, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "flow control: {} ({} lines/s per process)", if s.flow_control { "on" } else { "off" }, s.rate)?;
    writeln!(out, "writers {}, readers {}, malformed packets {}, kernel records lost {}", s.writers, s.readers, s.malformed, s.kmsg_lost)?;
    writeln!(
        out,
        "dropped over the rate {}, unsent by writers {}, connections refused {} (records from them {})",
        s.dropped_rate, s.dropped_writer, s.refused_connections, s.refused_records
    )?;
    writeln!(out, "{:<6} {:>10} {:>12} {:>10} {:>10} {:>10}", "type", "lines", "bytes", "evicted", "size", "used")?;
    for t in &s.types {
        writeln!(out, "{:<6} {:>10} {:>12} {:>10} {:>10} {:>10}", t.ty.name(), t.lines, t.bytes, t.evicted, t.size, t.used)?;
    }
    writeln!(out, "{:>7} {:>6} {:<20} {:>10} {:>12} {:>10} {:>10}", "pid", "uid", "tag", "lines", "bytes", "dropped", "unsent")?;
    for p in &s.procs {
        writeln!(out, "{:>7} {:>6} {:<20} {:>10} {:>12} {:>10} {:>10}", p.pid, p.uid, p.tag, p.lines, p.bytes, p.dropped_rate, p.dropped_writer)?;
    }
    Ok(())
}

/// `hilog …`.
///
/// # Errors
/// Bad options, hilogd unreachable, or hilogd's refusal.
pub fn main(args: Vec<String>) -> Result<()> {
    let Some(o) = parse(&args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    if let Some(on) = o.privacy {
        let param = crate::layer::PRIVACY_PARAM;
        accord_param::client::set(param, if on { "true" } else { "false" }).with_context(|| format!("setting {param}"))?;
        println!("private fields are {} (hilog.private.on={on})", if on { "hidden" } else { "shown" });
        return Ok(());
    }
    let path = control_path();
    let mut c = Client::connect(&path).with_context(|| format!("cannot reach hilogd at {}", path.display()))?;
    let mut out = std::io::stdout().lock();
    let types = o.filter.types.clone();
    let one = |c: &mut Client, req: &Request| -> Result<Response> {
        match c.call(req)? {
            Response::Error { message } => bail!("hilogd: {message}"),
            r => Ok(r),
        }
    };
    if let Some(w) = &o.persist {
        let action = match w.as_str() {
            "start" => crate::control::PersistAction::Start(crate::persist::Spec { types: types.clone(), ..o.spec.clone() }),
            "stop" => crate::control::PersistAction::Stop,
            _ => crate::control::PersistAction::Query,
        };
        if let Response::Persist { status } = one(&mut c, &Request::Persist { action })? {
            match (&status.spec, status.running) {
                (Some(s), true) => {
                    let t: Vec<_> = if s.types.is_empty() { crate::control::DEFAULT_TYPES.to_vec() } else { s.types.clone() };
                    writeln!(
                        out,
                        "persisting {} to {}.* ({} bytes a file, {} files, {}): {} lines written, now {}",
                        t.iter().map(|t| t.name()).collect::<Vec<_>>().join(","),
                        s.name,
                        s.file_size,
                        s.files,
                        if s.compress { "gzip" } else { "plain" },
                        status.lines,
                        status.current.as_deref().unwrap_or("(no file yet)")
                    )?;
                }
                _ => writeln!(out, "not persisting{}", status.error.map(|e| format!(" (stopped: {e})")).unwrap_or_default())?,
            }
        }
        return Ok(());
    }
    if o.clear || o.get_size || o.set_size.is_some() || o.stats || o.flow.is_some() {
        if let Some(pid) = o.flow {
            if let Response::Done { message } = one(&mut c, &Request::FlowControl { pid })? {
                writeln!(out, "{message}")?;
            }
        }
        if o.clear {
            if let Response::Done { message } = one(&mut c, &Request::Clear { types: types.clone() })? {
                writeln!(out, "{message}")?;
            }
        }
        if o.get_size || o.set_size.is_some() {
            if let Response::Sizes { sizes } = one(&mut c, &Request::BufferSize { types: types.clone(), set: o.set_size })? {
                for (t, size, used) in sizes {
                    writeln!(out, "{} buffer size is {size} bytes ({used} used)", t.name())?;
                }
            }
        }
        if o.stats {
            if let Response::Stats { stats } = one(&mut c, &Request::Stats)? {
                print_stats(&stats, &mut out)?;
            }
        }
        return Ok(());
    }
    let follow = !(o.exit || o.head.is_some() || o.tail.is_some());
    c.send(&Request::Query { filter: o.filter, follow, head: o.head, tail: o.tail })?;
    let mut line = String::new();
    loop {
        let Some(r) = c.recv()? else { bail!("hilogd closed the connection") };
        let res = match r {
            Response::Records { records } => {
                let mut res = Ok(());
                for rec in &records {
                    line.clear();
                    line.push_str(&format_record(rec));
                    line.push('\n');
                    res = out.write_all(line.as_bytes());
                    if res.is_err() {
                        break;
                    }
                }
                res.and_then(|_| if follow { out.flush() } else { Ok(()) })
            }
            Response::Lost { count } => writeln!(out, "hilog: up to {count} lines were overwritten before they were read"),
            Response::End => return Ok(out.flush()?),
            Response::Error { message } => bail!("hilogd: {message}"),
            other => bail!("hilogd answered {other:?} to a query"),
        };
        if res.is_err() {
            // The reader went away (`hilog | head`): not an error.
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        let a = |s: &str| std::iter::once("hilog").chain(s.split(' ')).map(String::from).collect::<Vec<_>>();
        let o = parse(&a("-x -t core,kmsg -L W,E -D 0x3200 -T a,b -P 12 -e ^x -z 5")).unwrap().unwrap();
        assert!(o.exit);
        assert_eq!(o.filter.types, [LogType::Core, LogType::Kmsg]);
        assert_eq!(o.filter.levels, [Level::Warn, Level::Error]);
        assert_eq!(o.filter.domains, [0x3200]);
        assert_eq!(o.filter.tags, ["a", "b"]);
        assert_eq!(o.filter.pids, [12]);
        assert_eq!(o.tail, Some(5));
        assert!(parse(&a("-t bogus")).is_err());
        assert!(parse(&a("-k on")).unwrap_err().to_string().contains("not implemented"));
        assert_eq!(parse(&a("-p off")).unwrap().unwrap().privacy, Some(false));
        assert_eq!(parse(&a("-p on")).unwrap().unwrap().privacy, Some(true));
        assert!(parse(&a("-p maybe")).unwrap_err().to_string().contains("on or off"));
        let w = parse(&a("-w start -f boot -l 1M -n 3 -m none")).unwrap().unwrap();
        assert_eq!(w.persist.as_deref(), Some("start"));
        assert_eq!((w.spec.name.as_str(), w.spec.file_size, w.spec.files, w.spec.compress), ("boot", 1 << 20, 3, false));
        assert_eq!(parse(&a("-G 2M")).unwrap().unwrap().set_size, Some(2 << 20));
        assert_eq!(parse_size("64K"), Some(65536));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn lines_look_like_openharmony() {
        let r = Record {
            seq: 1,
            time_ns: 1_764_472_365_123_000_000,
            ty: LogType::App,
            level: Level::Info,
            domain: 0x3200,
            pid: 5394,
            tid: 5395,
            uid: 0,
            tag: "testTag".into(),
            msg: "hello".into(),
        };
        assert_eq!(format_record(&r), "11-30 03:12:45.123  5394  5395 I A03200/testTag: hello");
        let forged = Record { msg: "a\n11-30 00:00:00.000     1     1 F I00000/init: reboot\u{1b}[2J".into(), ..r.clone() };
        assert_eq!(
            format_record(&forged),
            "11-30 03:12:45.123  5394  5395 I A03200/testTag: a\n11-30 03:12:45.123  5394  5395 I A03200/testTag: 11-30 00:00:00.000     1     1 F I00000/init: reboot\\x1b[2J"
        );
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_723), (2024, 1, 1));
    }
}
