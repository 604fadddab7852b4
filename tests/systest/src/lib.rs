//! Drives an Accord image booted in QEMU through its serial console.
//!
//! [`Qemu::boot`] starts QEMU with the command `rootfs/qemu.sh --print`
//! gives (one source of truth for the machine), collects the console output
//! with host timestamps on a reader thread, and [`Qemu::run`] types a shell
//! command and returns its output and exit status, framed by markers. Text
//! sent before the shell prompt is lost, so everything waits for it first.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The prompt the image's /etc/profile sets.
pub const PROMPT: &str = "accord:/ # ";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap_or_else(|_| PathBuf::from("."))
}

#[derive(Default)]
struct Console {
    text: String,
    /// (byte offset into `text`, when it arrived)
    stamps: Vec<(usize, Instant)>,
}

pub struct Qemu {
    child: Child,
    stdin: ChildStdin,
    console: Arc<Mutex<Console>>,
    /// When QEMU was started.
    pub started: Instant,
    /// Bytes of console output already consumed by `wait_for`/`run`.
    cursor: usize,
    log_path: PathBuf,
    seq: u32,
}

impl Qemu {
    /// Starts QEMU for `arch`; `log_path` receives the console transcript.
    pub fn boot(arch: &str, log_path: &Path) -> Result<Qemu> {
        Qemu::boot_with_data(arch, log_path, None)
    }

    /// As [`Qemu::boot`], with `data_img` as the /data disk instead of
    /// out/<arch>/data.img.
    pub fn boot_with_data(arch: &str, log_path: &Path, data_img: Option<&Path>) -> Result<Qemu> {
        Qemu::boot_with(arch, log_path, data_img, &[])
    }

    /// As [`Qemu::boot_with_data`], with `extra` QEMU arguments (a QMP
    /// socket: [`Qmp`]).
    pub fn boot_with(arch: &str, log_path: &Path, data_img: Option<&Path>, extra: &[String]) -> Result<Qemu> {
        let repo = repo_root();
        let mut print = Command::new(repo.join("rootfs/qemu.sh"));
        // The tests read the screen through QMP: no window, whatever the
        // host has.
        print.args([arch, "--print"]).args(extra).env("ACCORD_DISPLAY", "none");
        if let Some(img) = data_img {
            print.env("ACCORD_DATA_IMG", img);
        }
        let out = print.output().context("run rootfs/qemu.sh --print")?;
        if !out.status.success() {
            bail!("rootfs/qemu.sh --print failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let args: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
        let Some((prog, rest)) = args.split_first() else { bail!("rootfs/qemu.sh printed no command") };
        let started = Instant::now();
        let mut child = Command::new(prog)
            .args(rest)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {prog}"))?;
        let stdin = child.stdin.take().context("qemu stdin")?;
        let console = Arc::new(Mutex::new(Console::default()));
        for mut pipe in [Box::new(child.stdout.take().context("stdout")?) as Box<dyn Read + Send>, Box::new(child.stderr.take().context("stderr")?)] {
            let console = console.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let now = Instant::now();
                    if let Ok(mut c) = console.lock() {
                        let off = c.text.len();
                        c.stamps.push((off, now));
                        let chunk = String::from_utf8_lossy(&buf[..n]).replace('\r', "");
                        c.text.push_str(&chunk);
                    }
                }
            });
        }
        Ok(Qemu { child, stdin, console, started, cursor: 0, log_path: log_path.to_owned(), seq: 0 })
    }

    fn text(&self) -> String {
        self.console.lock().map(|c| c.text.clone()).unwrap_or_default()
    }

    /// Everything the console printed so far.
    pub fn transcript(&self) -> String {
        self.text()
    }

    /// When the console printed the byte at `offset`.
    fn time_of(&self, offset: usize) -> Option<Instant> {
        let c = self.console.lock().ok()?;
        c.stamps.iter().rev().find(|(o, _)| *o <= offset).map(|(_, t)| *t)
    }

    /// Waits for `needle` after the cursor; returns when it was printed.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.text();
            if let Some(pos) = text.get(self.cursor..).and_then(|t| t.find(needle)) {
                let at = self.cursor + pos;
                self.cursor = at + needle.len();
                return Ok(self.time_of(at).unwrap_or_else(Instant::now));
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                self.save_log();
                bail!("QEMU exited ({st}) while waiting for {needle:?}");
            }
            if Instant::now() > deadline {
                self.save_log();
                bail!("timed out after {timeout:?} waiting for {needle:?}; console tail:\n{}", tail(&text, 1500));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Types a line into the console.
    pub fn send(&mut self, line: &str) -> Result<()> {
        self.stdin.write_all(line.as_bytes())?;
        self.stdin.write_all(b"\n")?;
        self.stdin.flush()?;
        Ok(())
    }

    /// Runs `cmd` in the shell; returns (exit status, output).
    pub fn run(&mut self, cmd: &str, timeout: Duration) -> Result<(i32, String)> {
        self.seq += 1;
        let tag = format!("@@{}@@", self.seq);
        // The markers are built by the shell (`printf`), so the echo of
        // the typed line itself never matches them.
        self.send(&format!("printf '%s%s\\n' '{tag}' BEGIN; {cmd}; printf '%s%s %d\\n' '{tag}' END $?"))?;
        self.wait_for(&format!("{tag}BEGIN\n"), timeout)?;
        let start = self.cursor;
        self.wait_for(&format!("{tag}END "), timeout)?;
        let end = self.cursor - format!("{tag}END ").len();
        // The status may still be on its way: wait for its line to end.
        let deadline = Instant::now() + timeout;
        let text = loop {
            let text = self.text();
            if text.get(self.cursor..).is_some_and(|r| r.contains('\n')) {
                break text;
            }
            if Instant::now() > deadline {
                bail!("no status after {tag}END");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let output = text.get(start..end).unwrap_or("").to_owned();
        let rest = text.get(self.cursor..).unwrap_or("");
        let Some(nl) = rest.find('\n') else { bail!("no status after {tag}END") };
        let rc: i32 = rest[..nl].trim().parse().with_context(|| format!("bad status {:?}", &rest[..nl]))?;
        self.cursor += nl + 1;
        Ok((rc, output))
    }

    /// Waits for QEMU to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<(ExitStatus, Instant)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait()? {
                let at = Instant::now();
                self.save_log();
                return Ok((st, at));
            }
            if Instant::now() > deadline {
                self.save_log();
                bail!("QEMU did not exit within {timeout:?}; console tail:\n{}", tail(&self.text(), 1500));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills QEMU with SIGKILL (a power cut for the guest: what it had not
    /// handed to its virtual disk is lost) and waits for it to go.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill().context("kill QEMU")?;
        self.child.wait().context("wait for QEMU")?;
        self.save_log();
        Ok(())
    }

    pub fn save_log(&self) {
        let _ = std::fs::write(&self.log_path, self.text());
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.save_log();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// QEMU's machine protocol on a unix socket (QEMU started with
/// `-qmp unix:<path>,server=on,wait=off`): hot-plugging devices,
/// screenshots, keys.
pub struct Qmp {
    reader: std::io::BufReader<std::os::unix::net::UnixStream>,
    writer: std::os::unix::net::UnixStream,
}

impl Qmp {
    /// Connects (waiting up to 30 s for QEMU to listen) and leaves the
    /// capabilities negotiation.
    pub fn connect(path: &Path) -> Result<Qmp> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let stream = loop {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => bail!("QMP socket {}: {e}", path.display()),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let writer = stream.try_clone()?;
        let mut q = Qmp { reader: std::io::BufReader::new(stream), writer };
        q.line().context("QMP greeting")?;
        q.execute("qmp_capabilities", serde_json::json!({}))?;
        Ok(q)
    }

    fn line(&mut self) -> Result<serde_json::Value> {
        use std::io::BufRead;
        let mut l = String::new();
        if self.reader.read_line(&mut l)? == 0 {
            bail!("QMP: QEMU closed the socket");
        }
        serde_json::from_str(&l).with_context(|| format!("QMP: {l:?}"))
    }

    /// Runs `command` with `arguments`; its `return` value, or its error.
    pub fn execute(&mut self, command: &str, arguments: serde_json::Value) -> Result<serde_json::Value> {
        let req = serde_json::json!({"execute": command, "arguments": arguments});
        writeln!(self.writer, "{req}")?;
        loop {
            let v = self.line()?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                bail!("QMP {command}: {e}");
            }
            // An event: not the answer.
        }
    }

    /// Presses and releases a key (a QEMU `qcode`, e.g. `shift`) on the
    /// guest's keyboard.
    pub fn press_key(&mut self, qcode: &str) -> Result<()> {
        for down in [true, false] {
            let ev = serde_json::json!({"events": [{"type": "key", "data": {"down": down, "key": {"type": "qcode", "data": qcode}}}]});
            self.execute("input-send-event", ev)?;
        }
        Ok(())
    }
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Checks listed as `ok - name` / `FAIL - name`, closing with
/// `N passed, M failed`.
#[derive(Default)]
pub struct Report {
    pub passed: u32,
    pub failed: u32,
}

impl Report {
    pub fn check(&mut self, name: &str, result: Result<()>) {
        match result {
            Ok(()) => {
                self.passed += 1;
                println!("ok - {name}");
            }
            Err(e) => {
                self.failed += 1;
                println!("FAIL - {name}: {e:#}");
            }
        }
    }

    pub fn finish(&self) -> std::process::ExitCode {
        println!("{} passed, {} failed", self.passed, self.failed);
        if self.failed == 0 {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        }
    }
}
