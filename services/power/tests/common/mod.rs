//! What the power tests share: samgr with one test policy (uids 2000-2020
//! and system may get SAs 3301-3303; 2000 holds every power permission,
//! 2002 none, the others RUNNING_LOCK), the power manager's config on a
//! temporary tree, and acting as another uid.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use accord_power::config::{ModeTimes, PowerConfig};
use accord_power::power::Config;
use accord_power::{PowerError, PowerManagerProxy, ID};
use accord_safwk::typed::CallError;
use accord_safwk::Samgr;

pub const DEADLINE: Duration = Duration::from_secs(30);

/// Uids 2000..=2020 and system may get the SAs; 2000 holds every power
/// permission; 2002 holds none; the others (and system) RUNNING_LOCK.
pub fn policy() -> String {
    let all: Vec<String> = (2000..=2020).map(|u| u.to_string()).collect();
    let locks: Vec<String> = std::iter::once(1000).chain(2000..=2020).filter(|u| *u != 2002).map(|u| u.to_string()).collect();
    format!(
        r#"{{
        "rules": [{{"ids": "3301-3303", "register": {{"uids": [0]}}, "get": {{"uids": [1000, {all}]}}}}],
        "permissions": {{
            "ohos.permission.POWER_MANAGER": {{"uids": [2000]}},
            "ohos.permission.POWER_OPTIMIZATION": {{"uids": [2000]}},
            "ohos.permission.REBOOT": {{"uids": [2000]}},
            "ohos.permission.RUNNING_LOCK": {{"uids": [{locks}]}}
        }}
    }}"#,
        all = all.join(", "),
        locks = locks.join(", ")
    )
}

/// samgr on a socket in `dir` any uid may reach, with [`policy`] (which
/// the SAs of this process check permissions against too).
pub fn samgr(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = policy();
    accord_safwk::set_host_policy(accord_safwk::policy::Policy::parse(&p, "test policy").unwrap());
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = dir.join("samgr");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let policy = accord_safwk::policy::Policy::parse(&p, "test policy").unwrap();
    tokio::spawn(accord_samgr::serve(listener, accord_samgr::Registry::new(policy, Vec::new(), Arc::new(accord_samgr::InitStarter))));
    sock
}

/// Short timeouts for mode 600 (dim at 200 ms, off at 400 ms, sleep 300
/// ms after) and 50 ms polls of the battery and thermal trees.
pub fn quick() -> PowerConfig {
    let mut c = PowerConfig::default();
    c.modes.insert(600, ModeTimes { display_off_ms: 400, dim_ms: 200, sleep_ms: 300 });
    c.battery.poll = Duration::from_millis(50);
    c.thermal.poll = Duration::from_millis(50);
    c
}

pub fn config(dir: &Path, cfg: PowerConfig, asked: &Arc<Mutex<Vec<String>>>) -> Config {
    let asked = asked.clone();
    Config {
        config: cfg,
        sys_power: dir.join("sys_power"),
        state_file: dir.join("power.json"),
        input_dir: None,
        powerctl: Arc::new(move |v: &str| {
            asked.lock().unwrap().push(v.to_owned());
            Ok(())
        }),
    }
}

pub fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, p).unwrap();
}

pub async fn pm(sock: &Path) -> PowerManagerProxy {
    Samgr::connect(sock).await.unwrap().get_proxy::<PowerManagerProxy>(ID).await.unwrap()
}

pub fn sa_err<T: std::fmt::Debug>(r: Result<T, CallError<PowerError>>) -> PowerError {
    match r {
        Err(CallError::Sa(e)) => e,
        other => panic!("expected the SA's error, got {other:?}"),
    }
}

/// Runs `f` on a thread whose credentials are `uid`, on a runtime of its
/// own, and returns its result; the thread and everything it serves (its
/// listeners) end when it returns.
pub fn as_uid<T: Send + 'static>(uid: u32, sock: &Path, f: impl AsyncFnOnce(Samgr) -> T + Send + 'static) -> T {
    let sock = sock.to_owned();
    std::thread::spawn(move || {
        accord_testkit::become_on_this_thread(uid, uid, &[]).expect("tests run as root");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move { f(Samgr::connect(&sock).await.unwrap()).await })
    })
    .join()
    .unwrap()
}
