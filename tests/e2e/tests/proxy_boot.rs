//! A proxy host booted from the user data the proxy-fleet module renders, on this
//! machine, in a throwaway root (`harness::boot`): the user data installs and writes
//! everything, the units it wrote are started as systemd would, and the host must then
//! come up from the emulator's group (the agent service's start-up sync), serve the
//! group's members through the rendered frontend to a client speaking proxy protocol v2
//! (as the NLB does), and apply a scale-out sent through the emulated SSM document,
//! reporting the new member's outcome to the reactor's inbox as the instance it is
//! (its id from IMDSv2, its messages sent with its role's session). A second host
//! installs HAProxy from a package of its own (`haproxy = { source = "deb", ... }`, from
//! S3), checked against its SHA-256 and its version, held, and serves too.
//!
//! Needs root (mount namespaces), util-linux's `unshare`/`nsenter` and `terraform` (its
//! `templatefile`, no provider): ignored by plain `cargo test`, run by
//! `scripts/check-proxy-boot` (part of the project's test command).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine as _;
use harness::boot::{BootSpec, BootedHost};
use harness::emulator::workspace_root;
use harness::fleet::Fleet;
use harness::world::{Blocking, ControlPath, DocumentHost, DOCUMENT, PROXY_TAG};
use harness::{free_port, http, wait_for, GroupSpec};

const GROUP: &str = "web-asg";
const BUCKET: &str = "proxy-artifacts-boot";
const SSM_AGENT_VERSION: &str = "3.3.0.0";
const SSM_AGENT_DEB: &[u8] = b"stand-in for amazon-ssm-agent.deb\n";
/// The client the PROXY header names (what the NLB would say).
const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 40000);

/// Runs `cmd` with `input` on its stdin; its output (`what` names it in panics).
fn run_with_input(mut cmd: Command, input: &[u8], what: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(input)
            .unwrap_or_else(|e| panic!("writing to {what}: {e}"));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn sha256(data: &[u8]) -> String {
    let out = run_with_input(Command::new("sha256sum"), data, "sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_string()
}

/// The names a `templatefile(...)` call in the proxy-fleet module's main.tf passes.
fn template_arguments(main_tf: &str, template: &str) -> Vec<String> {
    let start = main_tf
        .find(&format!("templates/{template}\", {{"))
        .unwrap_or_else(|| panic!("main.tf renders templates/{template}"));
    let body = &main_tf[start..];
    let body = &body[..body.find("})").expect("the call ends")];
    let mut names: Vec<String> = body
        .lines()
        .skip(1)
        .filter_map(|l| l.trim().split_once('='))
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('#'))
        .collect();
    names.sort();
    names
}

/// haproxy.debian.net's signing key (the module's default `haproxy.key_fingerprint`).
const HAPROXY_DEBIAN_NET_KEY: &str = "AEF2348766F371C689A7360095A42FE8353525F9";

/// The HAProxy the user data installs: the module's `haproxy` as main.tf passes it (the
/// `haproxy_*` arguments).
#[derive(Debug, Clone)]
struct Haproxy {
    source: &'static str,
    version: String,
    url: String,
    sha256: String,
    /// The package's bytes, put in the emulated S3 at `url` (`s3://bucket/key`).
    package: Option<PathBuf>,
}

impl Haproxy {
    /// Debian 12's own package (the default): this machine's haproxy stands for it.
    fn debian() -> Self {
        Self {
            source: "debian",
            version: "2.6".into(),
            url: String::new(),
            sha256: String::new(),
            package: None,
        }
    }
}

/// What differs between boots.
struct Render {
    frontend: SocketAddr,
    backend_port: u16,
    metrics: (u16, u16),
    agent_sha256: String,
    /// The instance the host is (what IMDSv2 answers).
    instance_id: String,
    /// The reactor's inbox (`report_queue`).
    report_queue: String,
    /// A copy of the agent.toml template to render instead of the module's.
    agent_template: Option<PathBuf>,
    /// Which HAProxy (the module's `haproxy`).
    haproxy: Haproxy,
}

/// The user data, rendered by Terraform from the module's templates with the
/// arguments main.tf passes (checked against main.tf, so the two cannot drift apart).
fn render_user_data(r: &Render) -> String {
    let module = workspace_root().join("terraform/modules/proxy-fleet");
    let main_tf = std::fs::read_to_string(module.join("main.tf")).expect("main.tf");
    let user_data_args = [
        "region",
        "deb_arch",
        "agent_bucket",
        "agent_key",
        "agent_sha256",
        "agent_toml",
        "ssm_agent_version",
        "ssm_agent_sha256",
        "haproxy_source",
        "haproxy_version",
        "haproxy_url",
        "haproxy_sha256",
        "haproxy_key_fingerprint",
    ];
    let agent_toml_args = [
        "accept_proxy",
        "pools",
        "groups",
        "sync_interval_s",
        "member_networks",
        "metrics_haproxy",
        "metrics_agent",
        "report_queue",
        "weights",
    ];
    for (template, given) in [
        ("user-data.sh.tftpl", &user_data_args[..]),
        ("agent.toml.tftpl", &agent_toml_args[..]),
    ] {
        let mut given: Vec<String> = given.iter().map(|s| s.to_string()).collect();
        given.sort();
        assert_eq!(
            template_arguments(&main_tf, template),
            given,
            "main.tf renders {template} with other arguments than this test: update the test"
        );
    }
    let agent_template = r
        .agent_template
        .clone()
        .unwrap_or_else(|| module.join("templates/agent.toml.tftpl"));
    let pools = format!(
        r#"[{{ name = "web", port = {}, ports = [], bind = "{}", slots = 4, max_slots = 64, balance = "roundrobin", max_members = 1000, server_options = "check inter 200ms fall 2 rise 2", health_path = "/healthz", health_timeout_s = 20, drain_timeout_s = 5, zone_affinity = "off", min_zone_members = 1 }}]"#,
        r.backend_port, r.frontend
    );
    let agent_toml = format!(
        r#"trimspace(templatefile("{}", {{ accept_proxy = true, pools = {pools}, groups = {{ "{GROUP}" = ["web"] }}, sync_interval_s = 300, member_networks = ["127.0.0.0/8"], metrics_haproxy = "127.0.0.1:{}", metrics_agent = "127.0.0.1:{}", report_queue = "{}", weights = {{}} }}))"#,
        agent_template.display(),
        r.metrics.0,
        r.metrics.1,
        r.report_queue
    );
    let h = &r.haproxy;
    let expr = format!(
        r#"base64encode(templatefile("{}", {{ region = "{}", deb_arch = "amd64", agent_bucket = "{BUCKET}", agent_key = "agent/{sha}/agent", agent_sha256 = "{sha}", agent_toml = {agent_toml}, ssm_agent_version = "{SSM_AGENT_VERSION}", ssm_agent_sha256 = "{}", haproxy_source = "{}", haproxy_version = "{}", haproxy_url = "{}", haproxy_sha256 = "{}", haproxy_key_fingerprint = "{HAPROXY_DEBIAN_NET_KEY}" }}))"#,
        module.join("templates/user-data.sh.tftpl").display(),
        harness::emulator::REGION,
        sha256(SSM_AGENT_DEB),
        h.source,
        h.version,
        h.url,
        h.sha256,
        sha = r.agent_sha256,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut console = Command::new("terraform");
    console
        .args(["console", "-no-color"])
        .current_dir(dir.path())
        .env("TF_IN_AUTOMATION", "1");
    let out = run_with_input(
        console,
        format!("{expr}\n").as_bytes(),
        "terraform console (terraform on the PATH renders the templates)",
    );
    assert!(
        out.status.success(),
        "terraform console failed on the templates:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let b64 = text.trim().trim_matches('"');
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap_or_else(|e| panic!("terraform console printed no base64 ({e}): {text}"));
    String::from_utf8(bytes).expect("UTF-8 user data")
}

/// The emulator's endpoint and a session of the proxies' role named after the
/// instance: what AWS's endpoints and the instance profile would give the agent on
/// `instance`. The region stays the one the user data wrote.
fn instance_env(w: &Blocking, path: &ControlPath, instance: &str) -> Vec<(String, String)> {
    let session = w
        .proxy_session(path, instance)
        .expect("a session of the proxies' role");
    let mut env: Vec<(String, String)> = w
        .emulator
        .aws_env()
        .into_iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "AWS_REGION" | "AWS_DEFAULT_REGION" | "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY"
            )
        })
        .collect();
    env.extend(session.env());
    env
}

/// Boots a host for `r` and starts its units.
fn boot(r: &Render, agent: &Path) -> Result<BootedHost, String> {
    let mut s3_objects = vec![(
        format!("{BUCKET}/agent/{}/agent", r.agent_sha256),
        agent.to_path_buf(),
    )];
    if let Some(package) = &r.haproxy.package {
        let object = r
            .haproxy
            .url
            .strip_prefix("s3://")
            .expect("a package of the emulated S3 is at s3://bucket/key");
        s3_objects.push((object.to_string(), package.clone()));
    }
    let spec = BootSpec {
        user_data: render_user_data(r),
        s3_objects,
        ssm_agent_deb: SSM_AGENT_DEB.to_vec(),
        instance_id: r.instance_id.clone(),
        zone: "us-east-1b".into(),
    };
    BootedHost::boot(&spec).map_err(|e| format!("{e:#}"))
}

/// The backend names answering `n` requests through the frontend, behind proxy
/// protocol (errors as `!<error>`).
fn answers(frontend: SocketAddr, n: usize) -> Vec<String> {
    (0..n)
        .map(
            |_| match http::get_behind_proxy(frontend, CLIENT, "/", Duration::from_secs(2)) {
                Ok(r) if r.status == 200 => r.body.trim().to_string(),
                Ok(r) => format!("!{}", r.status),
                Err(e) => format!("!{e}"),
            },
        )
        .collect()
}

/// Waits (at most 30 s) until every one of `names` has answered through `frontend`;
/// panics naming `who`, with the last answers and both units' logs, when they do not.
fn members_serve(frontend: SocketAddr, names: &[String], host: &BootedHost, who: &str) {
    let served = wait_for(Duration::from_secs(30), || {
        let seen = answers(frontend, 8);
        names.iter().all(|n| seen.contains(n)).then_some(seen)
    });
    assert!(
        served.is_some(),
        "{who} serve through the rendered frontend within 30 s; last answers {:?}\nagent: {}\nhaproxy: {}",
        answers(frontend, 4),
        host.unit_log("haproxy-asg-agent.service"),
        host.unit_log("haproxy.service"),
    );
}

/// The emulated world of a boot: the member group and its backends, the reactor's
/// control path, and the proxy instance the booted host is.
struct Setup {
    w: Blocking,
    fleet: Fleet,
    backend_port: u16,
    agent: PathBuf,
    agent_sha256: String,
    path: ControlPath,
    proxy: String,
}

impl Setup {
    /// What to render for this world, on a fresh frontend and metrics ports.
    fn render(&self, agent_template: Option<PathBuf>) -> Render {
        self.render_with(agent_template, Haproxy::debian())
    }

    /// Starts the units the booted `host` wrote, in the environment of the instance it
    /// is: HAProxy, then the agent.
    fn start_units(&self, host: &mut BootedHost) {
        let started = host
            .start_units(&instance_env(&self.w, &self.path, &self.proxy))
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(started, ["haproxy.service", "haproxy-asg-agent.service"]);
    }

    /// The same, installing `haproxy`.
    fn render_with(&self, agent_template: Option<PathBuf>, haproxy: Haproxy) -> Render {
        Render {
            frontend: SocketAddr::from(([127, 0, 0, 1], free_port())),
            backend_port: self.backend_port,
            metrics: (free_port(), free_port()),
            agent_sha256: self.agent_sha256.clone(),
            instance_id: self.proxy.clone(),
            report_queue: self.path.inbox.clone(),
            agent_template,
            haproxy,
        }
    }
}

fn setup() -> Setup {
    let w = Blocking::start(None).expect("start the AWS emulator (scripts/setup-venv)");
    let path = w.control_path("boot", &[]).expect("control path");
    let proxy_subnet = w.add_subnet("127.0.2.0/24").expect("subnet");
    let proxy = w
        .block_on(w.run_instances(1, &proxy_subnet, PROXY_TAG.0, PROXY_TAG.1))
        .expect("proxy instance");
    let proxy = proxy.first().expect("one proxy instance").clone();
    let backend_port = free_port();
    let mut spec = GroupSpec::new(GROUP, &w.subnet);
    spec.desired = 2;
    w.group(&spec).expect("group");
    let fleet = Fleet::start(
        std::sync::Arc::clone(&w.world),
        &w.subnet,
        backend_port,
        "web",
        Duration::from_millis(100),
        Duration::from_secs(300),
    );
    let agent = harness::process::bin_path("agent").expect("the agent binary (cargo build)");
    let agent_sha256 = sha256(&std::fs::read(&agent).expect("read the agent binary"));
    Setup {
        w,
        fleet,
        backend_port,
        agent,
        agent_sha256,
        path,
        proxy,
    }
}

#[test]
#[ignore = "needs root, unshare/nsenter and terraform: scripts/check-proxy-boot runs it"]
fn a_proxy_boots_from_its_user_data_serves_the_group_and_applies_a_scale_out() {
    let s = setup();
    let (w, proxy) = (&s.w, &s.proxy);
    let r = s.render(None);
    let mut host = boot(&r, &s.agent).expect("boot");
    assert_eq!(
        host.user_data_status(),
        Some(0),
        "the user data failed:\n{}",
        host.user_data_output()
    );
    what_the_user_data_asked_of_the_stand_ins(&s, &host);

    // What systemd itself makes of them (where this machine has systemd-analyze).
    let units = host.units_to_start();
    match host.verify_units(&units) {
        Ok(None) => {}
        Ok(Some(complaints)) => panic!("systemd-analyze verify {units:?}: {complaints}"),
        Err(e) => eprintln!("systemd-analyze verify could not run here ({e:#}): not checked"),
    }
    s.start_units(&mut host);

    // The agent service's start-up sync found the group's two members; both serve.
    let members = w.members(GROUP).expect("members");
    assert_eq!(members.len(), 2, "{members:?}");
    let names: Vec<String> = members.iter().map(|m| format!("web-{}", m.id)).collect();
    members_serve(r.frontend, &names, &host, "both members");
    only_behind_proxy_protocol_with_metrics_where_asked(&r);

    // A scale-out, sent as the reactor sends it: Run Command with the project's document,
    // which runs the installed agent inside this root; it returns once the service
    // accepted the change, and the outcome goes to the inbox.
    let before: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
    let new = scale_out_through_the_document(&s, &host, &before);
    // The outcome, in the inbox, sent as this instance with its role's session.
    let report = report_of_the_new_member_up(&s, &host, &new);
    assert_eq!(report.0["kind"], "haproxy-asg.host-report", "{}", report.0);
    assert_eq!(
        report.1["SenderId"].as_str(),
        Some(format!("{}:{proxy}", s.path.role_id).as_str()),
        "sent with the instance's own session of the proxies' role: {}",
        report.1
    );
    let name = format!("web-{}", new.id);
    let seen = wait_for(Duration::from_secs(10), || {
        let seen = answers(r.frontend, 12);
        seen.contains(&name).then_some(seen)
    });
    assert!(
        seen.is_some(),
        "the new member serves: {:?}",
        answers(r.frontend, 6)
    );
    assert!(host.running("haproxy.service") && host.running("haproxy-asg-agent.service"));
}

/// What the user data asked of the stand-ins, wrote and installed on a host of `s`.
fn what_the_user_data_asked_of_the_stand_ins(s: &Setup, host: &BootedHost) {
    let (proxy, agent_sha256) = (&s.proxy, &s.agent_sha256);
    let calls = host.calls();
    let called = |prefix: &str| calls.iter().any(|c| c.starts_with(prefix));
    assert!(
        called("apt-get install -y -q --no-install-recommends haproxy awscli ca-certificates curl"),
        "{calls:#?}"
    );
    // The version check saw this machine's haproxy (standing for Debian 12's 2.6).
    let said = host.user_data_output();
    assert!(
        said.contains("HAProxy version 2.6.")
            && said
                .contains("haproxy-asg: HAProxy 2.6, as asked (Debian 12's haproxy package (2.6))"),
        "the user data prints haproxy -v and checks it: {said}"
    );
    assert!(called(&format!("curl -fsSL --retry 5 -o /tmp/amazon-ssm-agent.deb https://s3.{region}.amazonaws.com/amazon-ssm-{region}/{SSM_AGENT_VERSION}/debian_amd64/amazon-ssm-agent.deb", region = harness::emulator::REGION)), "{calls:#?}");
    assert!(
        called("curl -fsS --max-time 2 -X PUT -H X-aws-ec2-metadata-token-ttl-seconds: 60 http://169.254.169.254/latest/api/token"),
        "IMDSv2, a session token first: {calls:#?}"
    );
    let toml =
        std::fs::read_to_string(host.path("/etc/haproxy-asg/agent.toml")).expect("agent.toml");
    assert!(
        toml.contains(&format!("host = \"{proxy}\""))
            && toml.contains("zone = \"us-east-1b\"")
            && toml.contains(&s.path.inbox),
        "agent.toml names this instance as host, its zone (IMDSv2) and the inbox: {toml}"
    );
    assert!(
        called("dpkg -i /tmp/amazon-ssm-agent.deb"),
        "the SSM Agent package passed its checksum: {calls:#?}"
    );
    assert!(
        called(&format!(
            "aws s3 cp --region {} --only-show-errors s3://{BUCKET}/agent/{agent_sha256}/agent /usr/local/bin/agent.download",
            harness::emulator::REGION
        )),
        "{calls:#?}"
    );
    assert_eq!(
        host.units_to_start(),
        ["haproxy.service", "haproxy-asg-agent.service"],
        "{calls:#?}"
    );
    // The agent binary it installed is the one uploaded.
    assert_eq!(
        sha256(&std::fs::read(host.path("/usr/local/bin/agent")).expect("installed agent")),
        *agent_sha256
    );
    let dropin = host.load_unit("haproxy.service").expect("haproxy.service");
    assert!(
        dropin
            .exec_start
            .last()
            .is_some_and(|l| l.contains("-Ws") && l.contains("$EXTRAOPTS")),
        "{dropin:?}"
    );
}

/// accept-proxy: a client without the PROXY header is not served; the exporter
/// frontend and the agent's metrics answer where agent.toml says.
fn only_behind_proxy_protocol_with_metrics_where_asked(r: &Render) {
    let plain = http::get(r.frontend, "/", Duration::from_secs(2));
    assert!(
        !matches!(&plain, Ok(resp) if resp.status == 200),
        "the frontend binds with accept-proxy: {plain:?}"
    );
    for port in [r.metrics.0, r.metrics.1] {
        let m = http::get(
            SocketAddr::from(([127, 0, 0, 1], port)),
            "/metrics",
            Duration::from_secs(2),
        );
        assert!(
            matches!(&m, Ok(resp) if resp.status == 200),
            "metrics on {port}: {m:?}"
        );
    }
}

/// Scales the group out by one and sends the new member (once its backend runs) to the
/// booted host as the reactor does: Run Command with the project's document, running
/// the installed agent inside the root. Waits (60 s) for the command's success and
/// checks the acceptance names the new member; the new member.
fn scale_out_through_the_document(
    s: &Setup,
    host: &BootedHost,
    before: &[String],
) -> harness::world::GroupInstance {
    let (w, fleet, backend_port, proxy) = (&s.w, &s.fleet, s.backend_port, &s.proxy);
    w.block_on(w.ssm_document(60)).expect("SSM document");
    let mut agent_argv = host.enter();
    agent_argv.push("/usr/local/bin/agent".into());
    w.document_hosts(&[DocumentHost {
        instance: proxy.to_string(),
        agent: agent_argv.join(" "),
        env: Vec::new(),
    }])
    .expect("document host");
    w.scale(GROUP, 3).expect("scale out");
    let new = wait_for(Duration::from_secs(20), || {
        w.members(GROUP)
            .ok()?
            .into_iter()
            .find(|m| !before.contains(&m.id))
            .filter(|m| fleet.instance(&m.id).is_some())
    })
    .expect("a third instance, its backend running");
    let ip = w.block_on(w.private_ip(&new.id)).expect("its address");
    let change = serde_json::json!({
        "version": 1,
        "generation": harness::unix_ms(),
        "pools": [{"pool": "web", "add": [{"id": new.id, "address": ip, "port": backend_port}]}],
    });
    let output = send_through_the_document(s, &change);
    let accepted: serde_json::Value =
        serde_json::from_str(output.trim()).expect("a JSON acceptance");
    assert!(
        accepted.to_string().contains(&new.id),
        "the acceptance names the new member: {accepted}"
    );
    new
}

/// Sends `change` to the booted host of `s` with Run Command of the project's document
/// (action `apply`) and waits (60 s) for the command to end, in success; its output.
fn send_through_the_document(s: &Setup, change: &serde_json::Value) -> String {
    let (w, proxy) = (&s.w, &s.proxy);
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let ssm = aws_sdk_ssm::Client::new(&w.sdk);
    let sent = w
        .block_on(
            ssm.send_command()
                .document_name(DOCUMENT)
                .instance_ids(proxy)
                .parameters("Change", vec![b64(&change.to_string())])
                .parameters("Action", vec!["apply".to_string()])
                .send(),
        )
        .expect("SendCommand");
    let command_id = sent
        .command()
        .and_then(|c| c.command_id())
        .expect("a command id")
        .to_string();
    let mut last = String::new();
    let invocation = wait_for(Duration::from_secs(60), || {
        let inv = w.block_on(
            ssm.get_command_invocation()
                .command_id(&command_id)
                .instance_id(proxy)
                .send(),
        );
        last = format!("{inv:?}");
        let inv = inv.ok()?;
        let running = matches!(
            inv.status().map(|s| s.as_str()),
            Some("Pending" | "InProgress" | "Delayed")
        );
        (!running).then_some(inv)
    })
    .unwrap_or_else(|| panic!("the command did not end within 60 s: {last}"));
    let output = invocation.standard_output_content().unwrap_or_default();
    assert_eq!(
        invocation.status().map(|s| s.as_str()),
        Some("Success"),
        "{output}\n{}",
        invocation.standard_error_content().unwrap_or_default()
    );
    output.to_string()
}

/// Waits (60 s) for the host report in the inbox that says `new` is up, sent by the
/// booted host; the report and the message's attributes.
fn report_of_the_new_member_up(
    s: &Setup,
    host: &BootedHost,
    new: &harness::world::GroupInstance,
) -> (serde_json::Value, serde_json::Value) {
    let (w, proxy) = (&s.w, &s.proxy);
    let mut seen_reports = Vec::new();
    wait_for(Duration::from_secs(60), || {
        let got = w.receive_records(&s.path.inbox, 2).ok()?;
        seen_reports.extend(got.iter().map(|m| m.body.clone()));
        got.into_iter().find_map(|m| {
            let body: serde_json::Value = serde_json::from_str(&m.body).ok()?;
            let up = body["reports"].as_array()?.iter().any(|o| {
                o["member"] == new.id.as_str() && o["status"] == "up" && o["pool"] == "web"
            });
            (up && body["host"] == proxy.as_str()).then_some((body, m.attributes))
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "no host report says the new member is up within 60 s; messages: {seen_reports:?}\nagent: {}",
            host.unit_log("haproxy-asg-agent.service")
        )
    })
}

#[test]
#[ignore = "needs root, unshare/nsenter and terraform: scripts/check-proxy-boot runs it"]
fn a_wrong_socket_path_in_the_agent_toml_template_fails_the_boot() {
    let s = setup();
    // The admin socket in a directory nothing creates (Debian's package makes /run/haproxy).
    let template = std::fs::read_to_string(
        workspace_root().join("terraform/modules/proxy-fleet/templates/agent.toml.tftpl"),
    )
    .expect("agent.toml template");
    assert!(template.contains("admin_socket = \"/run/haproxy/admin.sock\""));
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("agent.toml.tftpl");
    std::fs::write(
        &broken,
        template.replace(
            "admin_socket = \"/run/haproxy/admin.sock\"",
            "admin_socket = \"/run/haproxy-asg/admin.sock\"",
        ),
    )
    .expect("write the broken template");
    let r = s.render(Some(broken));
    let mut host = boot(&r, &s.agent).expect("boot");
    let failure = if host.user_data_status() != Some(0) {
        format!("user data: {}", host.user_data_output())
    } else {
        match host.start_units(&instance_env(&s.w, &s.path, &s.proxy)) {
            Err(e) => format!("{e:#}"),
            Ok(started) => {
                let served = wait_for(Duration::from_secs(15), || {
                    answers(r.frontend, 4)
                        .iter()
                        .any(|a| a.starts_with("web-"))
                        .then_some(())
                });
                assert!(
                    served.is_none(),
                    "a host whose agent.toml names a socket nothing creates came up anyway ({started:?})"
                );
                format!(
                    "started but never served:\nhaproxy: {}\nagent: {}",
                    host.unit_log("haproxy.service"),
                    host.unit_log("haproxy-asg-agent.service")
                )
            }
        }
    };
    assert!(
        failure.contains("/run/haproxy-asg/admin.sock"),
        "the failure names the socket: {failure}"
    );
    eprintln!("the boot failed, as it should: {failure}");
}

/// The operator's package, as the emulated S3 holds it: the apt-get stand-in "installs" it
/// as this machine's haproxy (2.6.12), so 2.6 is the version to choose.
const HAPROXY_DEB: &[u8] = b"stand-in for haproxy_2.6.12-1_amd64.deb\n";

/// Runs `argv` inside the booted root; what it printed (it must succeed).
fn run_in(host: &BootedHost, argv: &[&str]) -> String {
    let mut cmd = host.enter();
    cmd.extend(argv.iter().map(|a| a.to_string()));
    let out = Command::new(&cmd[0])
        .args(&cmd[1..])
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether the stand-ins were asked to install the downloaded package.
fn installs_the_package(calls: &[String]) -> bool {
    calls
        .iter()
        .any(|c| c.starts_with("apt-get install") && c.contains("/tmp/haproxy-asg-haproxy.deb"))
}

#[test]
#[ignore = "needs root, unshare/nsenter and terraform: scripts/check-proxy-boot runs it"]
fn a_proxy_boots_from_a_haproxy_package_of_its_own_checked_held_and_serving() {
    let s = setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let package = dir.path().join("haproxy_2.6.12-1_amd64.deb");
    std::fs::write(&package, HAPROXY_DEB).expect("write the stand-in package");
    let url = format!("s3://{BUCKET}/packages/haproxy_2.6.12-1_amd64.deb");
    let deb = |version: &str, sum: String| Haproxy {
        source: "deb",
        version: version.to_string(),
        url: url.clone(),
        sha256: sum,
        package: Some(package.clone()),
    };

    // A package that does not match its SHA-256 is refused before apt sees it.
    let r = s.render_with(None, deb("2.6", sha256(b"another package\n")));
    let host = boot(&r, &s.agent).expect("boot");
    let said = host.user_data_output();
    assert_ne!(host.user_data_status(), Some(0), "{said}");
    assert!(
        said.contains(&format!(
            "haproxy-asg: {url} does not match haproxy.sha256; refusing to install it"
        )),
        "{said}"
    );
    assert!(!installs_the_package(&host.calls()), "{:#?}", host.calls());
    drop(host);

    // A package of another version than the one chosen stops the provisioning, which
    // names both (before the SSM Agent or any unit is enabled).
    let r = s.render_with(None, deb("3.0", sha256(HAPROXY_DEB)));
    let host = boot(&r, &s.agent).expect("boot");
    let said = host.user_data_output();
    assert_ne!(host.user_data_status(), Some(0), "{said}");
    assert!(
        said.contains(&format!(
            "haproxy-asg: HAProxy 3.0 from {url} was asked for (haproxy), but /usr/sbin/haproxy -v says: HAProxy version 2.6."
        )),
        "{said}"
    );
    let calls = host.calls();
    assert!(installs_the_package(&calls), "{calls:#?}");
    assert!(
        !calls.iter().any(|c| c.starts_with("systemctl enable")),
        "{calls:#?}"
    );
    drop(host);

    // The package chosen: fetched from S3, checked, installed by apt (which brings what it
    // depends on from Debian, not Debian's haproxy), held; then the host serves.
    let r = s.render_with(None, deb("2.6", sha256(HAPROXY_DEB)));
    let mut host = boot(&r, &s.agent).expect("boot");
    let said = host.user_data_output();
    assert_eq!(
        host.user_data_status(),
        Some(0),
        "the user data failed:\n{said}"
    );
    installed_from_s3_and_held(&host, &said, &url);
    what_debian_packaging_makes(&host);
    s.start_units(&mut host);
    let members = s.w.members(GROUP).expect("members");
    let names: Vec<String> = members.iter().map(|m| format!("web-{}", m.id)).collect();
    members_serve(r.frontend, &names, &host, "the group's members");
}

/// The package chosen: fetched from `url`, installed by apt (which brings what it depends
/// on from Debian, not Debian's haproxy), checked by its version (the user data said
/// `said`), held.
fn installed_from_s3_and_held(host: &BootedHost, said: &str, url: &str) {
    let calls = host.calls();
    let called = |prefix: &str| calls.iter().any(|c| c.starts_with(prefix));
    assert!(
        called(&format!(
            "aws s3 cp --region {} --only-show-errors {url} /tmp/haproxy-asg-haproxy.deb",
            harness::emulator::REGION
        )),
        "{calls:#?}"
    );
    assert!(
        called("apt-get install -y -q --no-install-recommends awscli ca-certificates curl"),
        "{calls:#?}"
    );
    assert!(
        called("apt-get install -y -q --no-install-recommends /tmp/haproxy-asg-haproxy.deb"),
        "{calls:#?}"
    );
    assert!(
        !called("apt-get install -y -q --no-install-recommends haproxy"),
        "Debian's haproxy is not asked for: {calls:#?}"
    );
    assert!(
        said.contains("HAProxy version 2.6.")
            && said.contains(&format!(
                "haproxy-asg: HAProxy 2.6, as asked (HAProxy 2.6 from {url})"
            )),
        "the user data prints haproxy -v and checks it: {said}"
    );
    assert!(
        run_in(host, &["apt-mark", "showhold"])
            .lines()
            .any(|l| l.trim() == "haproxy"),
        "the package is held"
    );
}

/// What Debian's packaging makes and the apt-get stand-in makes only for a haproxy
/// asked for by name: /run/haproxy (its tmpfiles.d) and the workers' chroot.
fn what_debian_packaging_makes(host: &BootedHost) {
    run_in(
        host,
        &[
            "install",
            "-d",
            "-m",
            "2775",
            "-o",
            "haproxy",
            "-g",
            "haproxy",
            "/run/haproxy",
        ],
    );
    run_in(
        host,
        &[
            "install",
            "-d",
            "-m",
            "0755",
            "/var/lib/haproxy",
            "/var/lib/haproxy/dev",
        ],
    );
}
