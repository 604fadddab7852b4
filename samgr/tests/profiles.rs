//! The shared case `sa-profile-current-keys-rejected`: a profile in
//! OpenHarmony's current form (the power manager's, SA 3301, with
//! `dump_level`, `min_hdi_proxy_version`, ...) is read by samgr and the
//! SA loads on demand through it.

use std::path::Path;
use std::sync::Arc;

use accord_safwk::profile::Profile;
use accord_safwk::{Caller, Published, Samgr, SystemAbility};
use accord_samgr::{Registry, Starter};

struct Power;
struct PowerIface;

#[zbus::interface(name = "org.accord.test.Power")]
impl PowerIface {
    fn state(&self) -> String {
        "awake".into()
    }
}

impl SystemAbility for Power {
    type Interface = PowerIface;
    const PATH: &'static str = "/org/accord/test/Power";
    fn connect(self: &Arc<Self>, _caller: Caller) -> PowerIface {
        PowerIface
    }
}

#[zbus::proxy(interface = "org.accord.test.Power", default_service = "org.accord.test", default_path = "/org/accord/test/Power")]
trait PowerClient {
    fn state(&self) -> zbus::Result<String>;
}

/// Starts the profile's host in this process, as init would start sa_main.
struct InProcess {
    profile: Profile,
    sock: std::path::PathBuf,
}

impl Starter for InProcess {
    fn start(&self, process: &str) -> Result<(), String> {
        assert_eq!(process, "powermgr");
        let (profile, sock) = (self.profile.clone(), self.sock.clone());
        tokio::runtime::Handle::current().spawn(async move {
            let make: accord_safwk::Maker = Box::new(|| Published::new(Power));
            accord_safwk::run_profile_at(&sock, &profile, vec![(3301, make)]).await.expect("run_profile");
        });
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_current_form_profile_loads_its_sa_on_demand() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("safwk/tests/profiles/01_powermgr_case.json");
    let profile = Profile::load(&file).expect("the current form is read");
    let warnings: Vec<String> = profile.warnings().collect();
    assert_eq!(warnings.len(), 2, "libpath and min_hdi_proxy_version, once each: {warnings:?}");
    assert!(warnings.iter().all(|w| w.contains("01_powermgr_case.json: systemability.")), "{warnings:?}");

    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("samgr");
    let starter = InProcess { profile: profile.clone(), sock: sock.clone() };
    let registry = Registry::new(Default::default(), vec![profile], Arc::new(starter));
    let _samgr = tokio::spawn(accord_samgr::serve(tokio::net::UnixListener::bind(&sock).unwrap(), registry));
    let client = Samgr::connect(&sock).await.unwrap();
    assert_eq!(client.list().await.unwrap(), vec![(3301, "NOT_LOADED".to_owned())]);
    let power = client.get::<PowerClientProxy>(3301).await.expect("SA 3301 loads through its profile");
    assert_eq!(power.state().await.unwrap(), "awake");
    assert_eq!(client.running_processes().await.unwrap().iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["powermgr"]);
}
