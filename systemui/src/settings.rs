//! The Settings application's About page (OpenHarmony's Settings >
//! About device): what the device is (its `const.` parameters, kernel,
//! uptime, memory), its storage use, its power mode and battery, and the
//! system abilities samgr knows. [`gather`] reads them (the SAs and the
//! power manager through samgr, as the app's uid), [`draw`] lays them out.

use std::{path::Path, time::Duration};

use crate::draw::{Canvas, Rgb, Text};

/// The page's colours.
pub const BACKGROUND: Rgb = 0x0f1720;
pub const HEADING: Rgb = 0x58a6ff;
pub const LABEL: Rgb = 0x8b98a5;
pub const VALUE: Rgb = 0xe6edf3;
/// The margin around the page and a row's height, in pixels.
pub const MARGIN: i32 = 32;
pub const ROW: i32 = 24;
/// Where values start, right of their labels.
pub const VALUE_X: i32 = 200;
/// The most rows of one section drawn (the rest are counted: "+ N more").
pub const MAX_ROWS: usize = 24;
/// How long one samgr call may take before its section says so.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A label and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub label: String,
    pub value: String,
}

/// A titled group of rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub title: &'static str,
    pub rows: Vec<Row>,
}

fn row(label: impl Into<String>, value: impl Into<String>) -> Row {
    Row { label: label.into(), value: value.into() }
}

/// `bytes` as people read sizes (binary units, one decimal).
pub fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `secs` as days, hours and minutes.
pub fn uptime_text(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60);
    match (d, h) {
        (0, 0) => format!("{m} min"),
        (0, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h {m} min"),
    }
}

/// The Device section: the parameters people ask for by name first, then
/// the kernel, uptime and memory.
pub fn device_section(params: &[(String, String)], kernel: &str, uptime_s: Option<u64>, meminfo: &str) -> Section {
    let param = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_else(|| "-".to_owned());
    let mem =
        |key: &str| meminfo.lines().find_map(|l| l.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()).map(|kib| size_text(kib * 1024));
    Section {
        title: "Device",
        rows: vec![
            row("Name", param("const.product.name")),
            row("Brand", param("const.product.brand")),
            row("Software", param("const.build.version")),
            row("API version", param("const.ohos.apiversion")),
            row("Kernel", kernel),
            row("Uptime", uptime_s.map_or_else(|| "-".to_owned(), uptime_text)),
            row(
                "Memory",
                match (mem("MemAvailable:"), mem("MemTotal:")) {
                    (Some(a), Some(t)) => format!("{a} free of {t}"),
                    _ => "-".to_owned(),
                },
            ),
        ],
    }
}

/// The Parameters section: every `const.` parameter, sorted.
pub fn params_section(params: &[(String, String)]) -> Section {
    let mut rows: Vec<Row> = params.iter().filter(|(n, _)| n.starts_with("const.")).map(|(n, v)| row(n.clone(), v.clone())).collect();
    rows.sort_by(|a, b| a.label.cmp(&b.label));
    Section { title: "Parameters", rows }
}

/// A file system's use: (total, available to users) in bytes, from
/// `statvfs`; `None` when it cannot be asked.
pub fn fs_use(path: &Path) -> Option<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    let frsize = st.fragment_size() as u64;
    Some((st.blocks() as u64 * frsize, st.blocks_available() as u64 * frsize))
}

/// The Storage section: each path's use.
pub fn storage_section(uses: &[(&str, Option<(u64, u64)>)]) -> Section {
    let rows = uses
        .iter()
        .map(|(path, u)| match u {
            Some((total, avail)) if *total > 0 => {
                let used = total.saturating_sub(*avail);
                row(*path, format!("{} used of {} ({}%)", size_text(used), size_text(*total), used * 100 / total))
            }
            _ => row(*path, "not mounted"),
        })
        .collect();
    Section { title: "Storage", rows }
}

/// The kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    nix::sys::utsname::uname().map_or_else(|_| "-".to_owned(), |u| u.release().to_string_lossy().into_owned())
}

/// The seconds since boot (`/proc/uptime`).
pub fn uptime() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    text.split('.').next()?.trim().parse().ok()
}

/// Everything but what samgr gives: the device, its parameters (`const.`,
/// from the parameter service) and its storage.
pub fn gather_local() -> Vec<Section> {
    let params = accord_param::client::Client::connect().and_then(|c| c.list("const.")).unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    vec![
        device_section(&params, &kernel_release(), uptime(), &meminfo),
        storage_section(&[("/data", fs_use(Path::new("/data"))), ("/", fs_use(Path::new("/")))]),
        params_section(&params),
    ]
}

/// The Power and System abilities sections, through samgr; a section that
/// cannot be had says why in its one row.
pub async fn gather_services() -> Vec<Section> {
    let samgr = match tokio::time::timeout(CALL_TIMEOUT, accord_safwk::Samgr::connect(&accord_safwk::samgr_socket())).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return unavailable(&format!("samgr: {e}")),
        Err(_) => return unavailable("samgr does not answer"),
    };
    let power = async {
        let id = accord_power::ID;
        let pm = samgr.get_proxy::<accord_power::PowerManagerProxy>(id).await.map_err(|e| format!("SA {id}: {e}"))?.with_timeout(CALL_TIMEOUT);
        let mode = pm.mode().await.map_err(|e| format!("SA {id}: {e}"))?;
        let state = pm.state().await.map_err(|e| format!("SA {id}: {e}"))?;
        let mut rows = vec![row("Mode", mode.name()), row("State", state.name())];
        let bid = accord_power::BATTERY_ID;
        if let Ok(b) = samgr.get_proxy::<accord_power::BatteryServiceProxy>(bid).await {
            match b.with_timeout(CALL_TIMEOUT).info().await {
                Ok(info) if info.present => rows.push(row("Battery", accord_power::battery_text(&info))),
                Ok(_) => rows.push(row("Battery", "none")),
                Err(e) => rows.push(row("Battery", format!("SA {bid}: {e}"))),
            }
        }
        Ok::<_, String>(rows)
    };
    let sas =
        async { tokio::time::timeout(CALL_TIMEOUT, samgr.dump()).await.map_err(|_| "samgr does not answer".to_owned())?.map_err(|e| format!("samgr: {e}")) };
    let (power, sas) = tokio::join!(power, sas);
    let power = Section { title: "Power", rows: power.unwrap_or_else(|e| vec![row("Unavailable", e)]) };
    let sas = Section {
        title: "System abilities",
        rows: match sas {
            Ok(list) => {
                list.into_iter().map(|s| row(s.id.to_string(), if s.process.is_empty() { s.state } else { format!("{} in {}", s.state, s.process) })).collect()
            }
            Err(e) => vec![row("Unavailable", e)],
        },
    };
    vec![power, sas]
}

fn unavailable(why: &str) -> Vec<Section> {
    vec![Section { title: "Power", rows: vec![row("Unavailable", why)] }, Section { title: "System abilities", rows: vec![row("Unavailable", why)] }]
}

/// One line for the log: what the page shows, in short.
pub fn summary(sections: &[Section]) -> String {
    sections
        .iter()
        .map(|s| match s.rows.as_slice() {
            [] => format!("{}: none", s.title),
            [r] if r.label == "Unavailable" => format!("{}: unavailable ({})", s.title, r.value),
            rows => format!("{}: {} ({}={})", s.title, rows.len(), rows[0].label, rows[0].value),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Draws `sections` on the page: in two columns when the page is at
/// least 1,000 pixels wide (the system abilities on the right), in one
/// otherwise. `heading` draws titles, `text` the rows.
pub fn draw(canvas: &mut Canvas<'_>, heading: Option<&Text>, text: Option<&Text>, sections: &[Section]) {
    let (w, h) = (canvas.width(), canvas.height());
    canvas.fill(0, 0, w, h, BACKGROUND);
    let two = w >= 1000;
    let column_w = if two { (w - 3 * MARGIN) / 2 } else { w - 2 * MARGIN };
    let mut y = [MARGIN, MARGIN];
    for (i, s) in sections.iter().enumerate() {
        let col = usize::from(two && i + 1 == sections.len() && s.title == "System abilities");
        let x = MARGIN + col as i32 * (column_w + MARGIN);
        if y[col] + ROW > h {
            continue;
        }
        if let Some(t) = heading {
            t.draw(canvas, s.title, x as f32, (y[col] + ROW / 2) as f32, HEADING);
        }
        y[col] += ROW + 4;
        let shown = s.rows.len().min(MAX_ROWS);
        for r in &s.rows[..shown] {
            if y[col] + ROW > h {
                break;
            }
            if let Some(t) = text {
                t.draw(canvas, &fit(t, &r.label, (VALUE_X - 12) as f32), (x + 8) as f32, (y[col] + ROW / 2) as f32, LABEL);
                t.draw(canvas, &fit(t, &r.value, (column_w - VALUE_X) as f32), (x + VALUE_X) as f32, (y[col] + ROW / 2) as f32, VALUE);
            }
            y[col] += ROW;
        }
        if s.rows.len() > shown && y[col] + ROW <= h {
            if let Some(t) = text {
                t.draw(canvas, &format!("+ {} more", s.rows.len() - shown), (x + 8) as f32, (y[col] + ROW / 2) as f32, LABEL);
            }
            y[col] += ROW;
        }
        y[col] += ROW / 2;
    }
}

/// `s` cut with an ellipsis to fit `max` pixels.
pub fn fit(text: &Text, s: &str, max: f32) -> String {
    if text.width(s) <= max {
        return s.to_owned();
    }
    let mut out: String = s.to_owned();
    while !out.is_empty() && text.width(&format!("{out}…")) > max {
        out.pop();
    }
    format!("{out}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_uptimes_read_as_people_read_them() {
        assert_eq!(size_text(512), "512 B");
        assert_eq!(size_text(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(size_text(250 << 30), "250.0 GiB");
        assert_eq!(uptime_text(59), "0 min");
        assert_eq!(uptime_text(3_700), "1 h 1 min");
        assert_eq!(uptime_text(90_061), "1 d 1 h 1 min");
    }

    #[test]
    fn sections_from_what_the_device_says() {
        let params =
            vec![("const.product.name".to_owned(), "Accord".to_owned()), ("persist.x".to_owned(), "1".to_owned()), ("const.a".to_owned(), "b".to_owned())];
        let d = device_section(&params, "6.12.0", Some(65), "MemTotal:     1024 kB\nMemAvailable:   512 kB\n");
        assert_eq!(d.rows[0], row("Name", "Accord"));
        assert_eq!(d.rows[1], row("Brand", "-"));
        assert!(d.rows.contains(&row("Kernel", "6.12.0")));
        assert!(d.rows.contains(&row("Uptime", "1 min")));
        assert!(d.rows.contains(&row("Memory", "512.0 KiB free of 1.0 MiB")));
        let p = params_section(&params);
        assert_eq!(p.rows.iter().map(|r| r.label.as_str()).collect::<Vec<_>>(), ["const.a", "const.product.name"]);
        let s = storage_section(&[("/data", Some((1 << 30, 1 << 29))), ("/x", None)]);
        assert_eq!(s.rows[0], row("/data", "512.0 MiB used of 1.0 GiB (50%)"));
        assert_eq!(s.rows[1], row("/x", "not mounted"));
        assert!(summary(&[d, s]).starts_with("Device: 7 (Name=Accord); Storage: 2"));
        assert_eq!(summary(&unavailable("samgr: gone")[..1]), "Power: unavailable (samgr: gone)");
    }

    #[test]
    fn the_page_is_drawn_in_columns_with_text() {
        let Some((_, font)) = crate::font::load() else { panic!("no font: install fonts-dejavu-core") };
        let t = Text::new(font, 15.0).unwrap();
        let sections = vec![
            Section { title: "Device", rows: vec![row("Name", "Accord")] },
            Section { title: "System abilities", rows: (0..40).map(|i| row(i.to_string(), "LOADED")).collect() },
        ];
        let (w, h) = (1200, 800);
        let mut buf = vec![0u8; (w * h * 4) as usize];
        let mut c = Canvas::new(&mut buf, w, h).unwrap();
        draw(&mut c, Some(&t), Some(&t), &sections);
        let lit = |c: &Canvas<'_>, x0: i32, x1: i32| (MARGIN..h).any(|y| (x0..x1).any(|x| c.get(x, y).is_some_and(|p| p != BACKGROUND)));
        // Both columns have text.
        assert!(lit(&c, MARGIN, w / 2 - MARGIN) && lit(&c, w / 2 + MARGIN, w - MARGIN));
        assert!(fit(&t, "a very long value indeed", 60.0).ends_with('…'));
    }
}
