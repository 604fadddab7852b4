//! Fuzzing init's real parameter client handler (issue 7, part 4): valid
//! frames of every request kind, mutated (bit flips, truncation, length
//! changes, huge announced lengths), thrown at the real socket of init as
//! PID 1 by uid 2000. init must answer what it can, drop what it cannot
//! parse, hold nothing afterwards, and go on serving root.

use std::io::Write;
use std::time::Duration;

use accord_param::proto::{encode_frame, read_frame, ErrorKind, Request, Response, MAX_FRAME};
use accord_testkit::Fixture;

const SEC: Duration = Duration::from_secs(1);

/// xorshift64*: deterministic, so a failure can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

fn name(r: &mut Rng) -> String {
    match r.below(4) {
        0 => r
            .pick(&["test.fuzz.a", "ohos.ctl.stop", "ohos.startup.powerctrl", "persist.sys.x", "const.product.name", "bootevent.x.ready", "test.fuzz."])
            .to_owned(),
        1 => format!("test.fuzz.n{}", r.below(50)),
        2 => (0..r.below(120)).map(|_| (32 + r.below(95)) as u8 as char).collect(),
        _ => "x".repeat(r.below(200)),
    }
}

fn request(r: &mut Rng) -> Request {
    match r.below(8) {
        0 => Request::Get { name: name(r) },
        1 => Request::Set { name: name(r), value: "v".repeat(r.below(130)) },
        2 => Request::List { prefix: name(r), after: if r.below(2) == 0 { None } else { Some(name(r)) } },
        // Short timeouts: a held connection handles nothing after the Wait
        // (the long ones are the subject of param_attacks' wait tests).
        3 => Request::Wait { name: name(r), pattern: r.pick(&["*", "1", "a*b*c", ""]).to_owned(), timeout_ms: [0, 1, 10, 50][r.below(4)] },
        4 => Request::Watch { prefix: name(r) },
        5 => Request::Save,
        6 => Request::Stats,
        _ => Request::DumpServices { name: if r.below(2) == 0 { None } else { Some(name(r)) }, skip: r.below(3) },
    }
}

/// Damages a frame. Mutations 0, 1 and 4 keep the stream in sync (the
/// length matches the body); with `desync`, 2, 3 and 5 break it.
fn mutate(r: &mut Rng, frame: &mut Vec<u8>, desync: bool) {
    let body = frame.len() - 4;
    let set_len = |f: &mut Vec<u8>, n: u32| f[..4].copy_from_slice(&n.to_le_bytes());
    let kind = if desync { [2, 3, 5][r.below(3)] } else { [0, 1, 4][r.below(3)] };
    match kind {
        0 => {
            for _ in 0..1 + r.below(3) {
                let i = 4 + r.below(body);
                frame[i] ^= 1 << r.below(8);
            }
        }
        1 => {
            let keep = r.below(body);
            frame.truncate(4 + keep);
            set_len(frame, keep as u32);
        }
        2 => {
            let n = (body as i64 + r.below(16) as i64 - 8).max(0) as u32;
            set_len(frame, n);
        }
        3 => set_len(frame, [u32::MAX, MAX_FRAME as u32 + 1, 128 << 20, MAX_FRAME as u32][r.below(4)]),
        4 => {
            let i = 4 + r.below(body);
            frame[i] = [b'"', b'\\', b'{', b'}', 0, 0xff][r.below(6)];
        }
        5 => {
            let cut = r.below(frame.len());
            frame.truncate(cut);
        }
        _ => {}
    }
}

#[test]
fn mutated_frames_from_uid_2000_leave_init_serving() {
    let cfg = r#"{"services": [{"name": "demo", "path": ["/bin/sleep", "1000"]}]}"#;
    let mut f = Fixture::new(cfg, &[("etc/param/t.para.dac", "* = root:root:0775\ntest.fuzz. = root:root:0777\n")]);
    f.boot();
    assert!(f.wait_param("startup.service.ctl.demo", "running", 10 * SEC));
    let seed = 0x5eed_0000_u64;
    let mut rng = Rng(seed | 1);
    let mut conns = f.connect_many_as(2000, 2000, &[], 100).expect("connect as uid 2000");
    let (mut reached, mut frame_errors, mut frames, mut in_sync) = (0usize, 0usize, 0usize, 0usize);
    for (ci, s) in conns.iter_mut().enumerate() {
        let mut bytes = Vec::new();
        for i in 0..20 {
            let mut fr = encode_frame(&request(&mut rng));
            if i == 19 && ci % 2 == 0 {
                // Half the connections end in a broken length.
                mutate(&mut rng, &mut fr, true);
            } else if rng.below(2) == 0 {
                mutate(&mut rng, &mut fr, false);
            }
            bytes.extend(fr);
            frames += 1;
        }
        // A sentinel that is answered if the stream is still in sync, then
        // 0xff padding: it completes any frame a mutated length left open
        // and its header (4 GiB) ends the connection, so the end is an
        // event to wait for, never a pause.
        let sentinel = format!("test.fuzz.sentinel.{ci}");
        bytes.extend(encode_frame(&Request::Get { name: sentinel.clone() }));
        bytes.extend(std::iter::repeat_n(0xffu8, MAX_FRAME + 8));
        // init may drop the connection before it has read everything.
        let _ = s.write_all(&bytes);
        s.set_read_timeout(Some(30 * SEC)).unwrap();
        loop {
            match read_frame::<Response>(s) {
                Ok(Some(Response::Error { kind: ErrorKind::Protocol, message })) if !message.starts_with("bad request") => frame_errors += 1,
                Ok(Some(Response::Error { message, .. })) if message.contains(&sentinel) => in_sync += 1,
                Ok(Some(_)) => reached += 1,
                Ok(None) => break,
                Err(accord_param::ParamError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    panic!("connection {ci} (seed {seed:#x}): init neither answered nor closed")
                }
                Err(_) => break,
            }
        }
    }
    eprintln!("{frames} frames: {reached} reached the request handler, {frame_errors} frame errors, {in_sync} of 100 connections in sync to the end");
    assert!(reached > frames / 2, "most frames reach the handler: {reached} of {frames} (seed {seed:#x})");
    assert!(frame_errors >= 100, "every connection ends with the padding's frame error: {frame_errors}");
    drop(conns);
    let ok = f.wait_until(30 * SEC, || {
        let s = f.stats();
        s["clients"] == 1 && s["waits"] == 0 && s["wait_timers"] == 0 && s["buffered_in"] == 0 && s["watches"] == 0
    });
    assert!(ok, "init holds nothing for the fuzzers: {:?}", f.stats());
    let c = f.client();
    c.set("test.after.fuzz", "fine").unwrap();
    assert_eq!(c.get("test.after.fuzz").unwrap(), "fine");
    assert_eq!(f.get("startup.service.ctl.demo").as_deref(), Some("running"), "uid 2000 stopped nothing");
    // The root set is logged after everything the fuzzers sent: once it is
    // in the log, so would be any panic before it.
    assert!(f.wait_until(30 * SEC, || f.log_text().contains("test.after.fuzz")), "log:\n{}", f.log_text());
    assert!(!f.log_text().contains("panicked"), "no handler panicked:\n{}", f.log_text());
}
