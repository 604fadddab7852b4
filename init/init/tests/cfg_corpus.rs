//! cfg files in the shapes OpenHarmony's services ship (`tests/corpus/`,
//! see its README) load as OpenHarmony loads them: what Accord implements
//! is parsed, what it does not is warned about, and every diagnostic names
//! the file and the line it comes from. The second half boots them in the
//! namespace fixture.

use std::path::{Path, PathBuf};
use std::time::Duration;

use accord_init::cfg::{self, condition, Config, Diagnostic, Severity};

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(name)
}

fn parse_all() -> (Config, Vec<Diagnostic>, Vec<(PathBuf, String)>) {
    let mut config = Config::default();
    let mut diags = Vec::new();
    let mut texts = Vec::new();
    let lookup = |n: &str| (n == "ohos.boot.hardware").then(|| "qemu".to_owned());
    for f in ["startup.cfg", "usbdemo.cfg", "services.cfg", "reboot.cfg"] {
        let path = corpus(f);
        let text = std::fs::read_to_string(&path).expect("corpus file");
        let imports = cfg::parse_file_str(&text, &path, &mut config, &mut diags, &lookup);
        if f == "startup.cfg" {
            assert_eq!(imports, vec![PathBuf::from("/etc/init.usbdemo.cfg"), PathBuf::from("/vendor/etc/init.qemu.cfg")]);
        }
        texts.push((path, text));
    }
    (config, diags, texts)
}

#[test]
fn corpus_loads_with_the_expected_services_jobs_and_conditions() {
    let (config, diags, _) = parse_all();
    let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["demo_console", "demo_uevent", "demo_spawn", "demo_watcher", "demo_periodic"]);
    let svc = |n: &str| config.services.iter().find(|s| s.name == n).expect("service");
    // AF_LOCAL is AF_UNIX; AF_NETLINK is not supported (the socket, not the
    // service, is dropped).
    assert_eq!(svc("demo_spawn").sockets.len(), 1);
    assert!(svc("demo_uevent").sockets.is_empty());
    assert_eq!(svc("demo_uevent").caps.as_ref().map(Vec::len), Some(6));
    assert!(svc("demo_uevent").caps.as_ref().is_some_and(|c| c.contains(&"CAP_NET_BIND_SERVICE".to_owned()) && c.contains(&"CAP_SETGID".to_owned())));
    assert_eq!(svc("demo_watcher").bootevents, vec!["bootevent.demo_watcher.started"]);
    assert!(svc("demo_watcher").critical.enabled);
    assert!(svc("demo_periodic").once);
    assert_eq!(svc("demo_periodic").period_secs, Some(30));
    assert!(svc("demo_console").disabled && svc("demo_console").console && svc("demo_console").ondemand);
    // Every job condition parses, stage terms and `param:` spellings included.
    for job in config.jobs.values() {
        if let Some(r) = condition::job_trigger(job) {
            assert!(r.is_ok(), "job {:?}: {:?}", job.name, r);
        }
    }
    let errors: Vec<String> = diags.iter().filter(|d| d.severity == Severity::Error).map(ToString::to_string).collect();
    assert_eq!(errors.len(), 1, "only the netlink socket is an error: {errors:?}");
    assert!(errors[0].contains("services.cfg:23: services[1] \"demo_uevent\".socket[0].family: \"AF_NETLINK\": only AF_UNIX is supported"), "{errors:?}");
}

#[test]
fn every_corpus_diagnostic_names_file_and_the_line_of_its_field() {
    let (_, diags, texts) = parse_all();
    let text_of = |p: &Path| texts.iter().find(|(f, _)| f == p).map(|(_, t)| t.as_str()).expect("a corpus file");
    assert!(!diags.is_empty());
    for d in &diags {
        let line = d.line.unwrap_or_else(|| panic!("no line: {d}"));
        let src = text_of(&d.file).lines().nth(line - 1).unwrap_or_else(|| panic!("line {line} past the end: {d}"));
        // A field's diagnostic points at the line holding that key.
        let last = d.location.rsplit('.').next().unwrap_or("");
        if !last.is_empty() && !last.contains('[') {
            assert!(src.contains(&format!("\"{last}\"")), "{d} points at {src:?}");
        }
    }
    let all: Vec<String> = diags.iter().map(ToString::to_string).collect();
    for want in [
        "services.cfg:8: services[0] \"demo_console\".sandbox: not supported on Accord; ignored",
        "services.cfg:15: services[0] \"demo_console\".secon: not supported on Accord; ignored",
        "services.cfg:54: services[2] \"demo_spawn\".apl: not supported on Accord; ignored",
        "services.cfg:63: services[3] \"demo_watcher\".saspawn: unknown service field; ignored",
        "startup.cfg:11: jobs[0] \"pre-init\".cmds[2]: unknown command \"mount_fstab_sp\"",
        "startup.cfg:45: jobs[5] \"init-extra\".cmds[0]: unknown command \"init_trace\"",
        "reboot.cfg:5: jobs[0] \"reboot\".cmds[0]: unknown command \"stop_feed_highdog\"",
    ] {
        assert!(all.iter().any(|m| m.contains(want)), "missing {want:?} in {all:#?}");
    }
}

#[test]
fn corpus_boots_in_the_namespace_fixture() {
    // The corpus as /etc/init/*.cfg: unknown and unsupported commands are
    // errors naming file and command, services that cannot run fail alone,
    // and boot completes.
    let files: Vec<(String, String)> = ["startup.cfg", "usbdemo.cfg", "services.cfg", "reboot.cfg"]
        .iter()
        .map(|f| (format!("etc/init/{f}"), std::fs::read_to_string(corpus(f)).expect("corpus")))
        .collect();
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
    let mut f = accord_testkit::Fixture::new("{}", &refs);
    f.boot();
    let deadline = Duration::from_secs(30);
    assert!(f.wait_param("bootevent.boot.completed", "true", deadline), "log:\n{}", f.log_text());
    assert!(f.wait_param("startup.service.ctl.demo_watcher", "error", deadline), "log:\n{}", f.log_text());
    let c = f.client();
    c.set("persist.demo.usb.config", "hdc").expect("set");
    assert!(f.wait_param("sys.demo.usb.config", "hdc", deadline), "log:\n{}", f.log_text());
    assert!(
        f.wait_until(deadline, || f.log_text().contains("/etc/init/startup.cfg:45: jobs[5].cmds[0]: init_trace start: unknown command")),
        "{}",
        f.log_text()
    );
    assert!(!f.log_text().contains("panicked"), "{}", f.log_text());
}

#[test]
fn the_readme_cfg_example_loads_without_complaint() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).expect("README.md");
    let start = readme.find("## Writing cfg files").expect("section");
    let block = &readme[start..];
    let json = block.split("```json\n").nth(1).and_then(|b| b.split("```").next()).expect("a json block");
    let mut config = Config::default();
    let mut diags = Vec::new();
    let lookup = |n: &str| (n == "const.product.name").then(|| "demo".to_owned());
    cfg::parse_file_str(json, Path::new("README.md"), &mut config, &mut diags, &lookup);
    assert!(diags.is_empty(), "{:?}", diags.iter().map(ToString::to_string).collect::<Vec<_>>());
    assert_eq!(config.services.len(), 1);
}
