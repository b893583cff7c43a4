//! The reactor driving the real agent binary and a real HAProxy through the local
//! dispatcher (`LOCAL_AGENTS`), with the emulator's lifecycle hooks: a member that
//! answers health checks is continued, one that never does is abandoned.
//!
//! Needs `haproxy` on the PATH and the agent built (`cargo build -p agent`); without
//! them the test says so and passes without running (the end-to-end suite in `tests/`
//! covers the agent itself).

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use reactor::testkit::wait_until;
use serde_json::Value;

fn agent_binary() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| reactor::testkit::workspace_root().join("target"));
    let agent = target.join("debug/agent");
    let help = Command::new(&agent)
        .args(["apply", "--help"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&help.stdout);
    (help.status.success() && text.contains("--file") && text.contains("--json")).then_some(agent)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18080)
}

struct Haproxy(std::process::Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let exited = wait_until(Duration::from_secs(3), || self.0.try_wait().ok().flatten());
        if exited.is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_agent_gates_launches_on_health() {
    let Some(agent) = agent_binary() else {
        eprintln!(
            "SKIPPED: no agent binary supporting `apply --json --file -` (cargo build -p agent)"
        );
        return;
    };
    if Command::new("haproxy").arg("-v").output().is_err() {
        eprintln!("SKIPPED: haproxy is not installed");
        return;
    }
    let w = World::new().await;
    let port = free_port();
    let pools = format!(r#"{{"web-asg":[{{"name":"web","port":{port}}}]}}"#);
    w.group(GROUP, true, false, &[]).await;
    w.scale(GROUP, 2).await;
    let members = w.members(GROUP).await;
    let (healthy, sick) = (members[0].0.clone(), members[1].0.clone());
    // Only the first member serves (a TCP check is enough).
    let ip = w.private_ip(&healthy).await;
    let listener = TcpListener::bind(format!("{ip}:{port}")).expect("backend listener");
    std::thread::spawn(move || for _ in listener.incoming() {});

    let d = w.dir.path().join("proxy1");
    std::fs::create_dir_all(d.join("state")).expect("dirs");
    let toml = format!(
        "host = \"proxy1\"\n[haproxy]\nconfig = \"{cfg}\"\nadmin_socket = \"{admin}\"\nmaster_socket = \"{master}\"\nbinary = \"haproxy\"\nstate_dir = \"{state}\"\n\n[[pool]]\nname = \"web\"\nport = {port}\nbind = \"127.0.0.1:{front}\"\nslots = 4\nserver_options = \"check inter 200ms fall 2 rise 1\"\nhealth_timeout_s = 4\ndrain_timeout_s = 2\n",
        cfg = d.join("haproxy.cfg").display(),
        admin = d.join("admin.sock").display(),
        master = d.join("master.sock").display(),
        state = d.join("state").display(),
        front = free_port(),
    );
    let config = d.join("agent.toml");
    std::fs::write(&config, toml).expect("agent.toml");
    let rendered = Command::new(&agent)
        .arg("--config")
        .arg(&config)
        .args(["config", "render"])
        .output()
        .expect("agent config render");
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    std::fs::write(d.join("haproxy.cfg"), &rendered.stdout).expect("haproxy.cfg");
    std::fs::write(d.join("state/server-state"), "1\n").expect("server-state");
    let log = std::fs::File::create(d.join("haproxy.log")).expect("log");
    let child = Command::new("haproxy")
        .arg("-W")
        .arg("-S")
        .arg(d.join("master.sock"))
        .arg("-f")
        .arg(d.join("haproxy.cfg"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("haproxy");
    let _haproxy = Haproxy(child);
    let admin = d.join("admin.sock");
    let up = wait_until(Duration::from_secs(10), || {
        std::os::unix::net::UnixStream::connect(&admin).ok()
    });
    assert!(
        up.is_some(),
        "haproxy did not come up: {}",
        std::fs::read_to_string(d.join("haproxy.log")).unwrap_or_default()
    );

    let agents = serde_json::to_string(&vec![vec![
        agent.display().to_string(),
        "--config".to_string(),
        config.display().to_string(),
    ]])
    .expect("json");
    let r = w.reactor(&[("POOLS", &pools), ("LOCAL_AGENTS", &agents)]);
    let event = w.event("EC2 Instance-launch Lifecycle Action", &healthy);
    let s = r.handle(&event, deadline(60)).await.expect("handled");
    let decision = |id: &str| {
        s.actions
            .iter()
            .find(|a| a.instance == id)
            .map(|a| a.decision.clone())
            .unwrap_or_default()
    };
    assert_eq!(decision(&healthy), "CONTINUE", "{s:?}");
    assert_eq!(
        decision(&sick),
        "ABANDON",
        "the agent reported {sick} up although nothing listens on its address: a slot must not \
         count as UP before its first health check passed\n{s:?}"
    );
    let result = |id: &str| -> Option<String> {
        w.actions_of(id, "launch")
            .iter()
            .find_map(|r: &Value| r["result"].as_str().map(str::to_string))
    };
    assert_eq!(result(&healthy).as_deref(), Some("CONTINUE"));
    assert_eq!(result(&sick).as_deref(), Some("ABANDON"));
}
