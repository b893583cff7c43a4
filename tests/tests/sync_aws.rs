//! `agent sync` reading the desired state from AWS (the moto emulator with the project's
//! extension), against a real HAProxy and real backends at the instances' addresses.

use std::time::Duration;

use aws_sdk_autoscaling::Client as Asg;
use aws_sdk_ec2::Client as Ec2;
use e2e::moto::MotoServer;
use e2e::{free_port, http, wait_for, Backend, Host, HostSpec, PoolSpec};
use reactor::testkit::{loopback_vpc, subnet};

/// The standard AWS environment pointing at the emulator, for the agent's runs.
fn aws_env(moto: &MotoServer) -> Vec<(String, String)> {
    let url = moto.url();
    [
        ("AWS_ENDPOINT_URL", url.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

async fn clients(url: &str) -> (Ec2, Asg) {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    (Ec2::new(&conf), Asg::new(&conf))
}

/// A group of `n` instances with loopback addresses (127.0.1.4, .5, ...), no hooks.
async fn group(ec2: &Ec2, asg: &Asg, name: &str, n: i32) {
    let vpc = loopback_vpc(ec2, &format!("{name}-lt")).await.unwrap();
    let subnet_id = subnet(ec2, &vpc, "127.0.1.0/24").await.unwrap();
    asg.create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_template(
            aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                .launch_template_name(format!("{name}-lt"))
                .build(),
        )
        .min_size(0)
        .max_size(10)
        .desired_capacity(n)
        .vpc_zone_identifier(subnet_id)
        .send()
        .await
        .unwrap();
}

async fn members(ec2: &Ec2, asg: &Asg, name: &str) -> Vec<(String, String)> {
    let g = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .unwrap();
    let ids: Vec<String> = g.auto_scaling_groups()[0]
        .instances()
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect();
    let d = ec2
        .describe_instances()
        .set_instance_ids(Some(ids))
        .send()
        .await
        .unwrap();
    d.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| {
            Some((
                i.instance_id()?.to_string(),
                i.private_ip_address()?.to_string(),
            ))
        })
        .collect()
}

#[test]
fn sync_reads_the_group_from_aws_and_repairs_drift() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let moto = MotoServer::start(None).expect("start the AWS emulator (scripts/setup-venv)");
    let (ec2, asg) = rt.block_on(clients(&moto.url()));
    rt.block_on(group(&ec2, &asg, "web-asg", 2));
    let found = rt.block_on(members(&ec2, &asg, "web-asg"));
    assert_eq!(found.len(), 2, "{found:?}");

    // Each instance is a real server at its (loopback) private address.
    let port = free_port();
    let backends: Vec<Backend> = found
        .iter()
        .map(|(id, ip)| Backend::spawn(id, &format!("{ip}:{port}"), false).unwrap())
        .collect();
    let mut pool = PoolSpec::new("web", 4);
    pool.port = port;
    let h = Host::start(&HostSpec {
        name: "proxy-aws".into(),
        pools: vec![pool],
        extra_toml: "[aws]\ngroups = { \"web-asg\" = [\"web\"] }\n".into(),
        env: aws_env(&moto),
    })
    .unwrap();

    let dry = h.agent(&["sync", "--dry-run"], None).unwrap();
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    for (id, ip) in &found {
        assert!(
            dry.stdout.contains(&format!("+ web          {id}")),
            "{}",
            dry.stdout
        );
        assert!(
            dry.stdout.contains(&format!("{ip}:{port}")),
            "{}",
            dry.stdout
        );
    }
    assert!(dry.stdout.contains("dry run: nothing was changed"));
    assert!(
        h.assignments().unwrap().is_empty(),
        "a dry run changes nothing"
    );

    let run = h.agent(&["sync"], None).unwrap();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let a = h.assignments().unwrap();
    assert_eq!(a.len(), 2, "{a:?}");
    let fe = h.frontend("web");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let r = http::get(fe, "/", Duration::from_secs(5)).unwrap();
        assert_eq!(r.status, 200);
        seen.insert(r.body.trim().to_string());
    }
    assert_eq!(seen.len(), 2, "both instances serve: {seen:?}");

    // Drift: a slot HAProxy serves that no member owns, and a member put in maint by hand.
    let stray = Backend::start("stray", "127.0.0.1").unwrap();
    let c = h.client();
    c.batch(&[
        format!(
            "set server web/slot4 addr 127.0.0.1 port {}",
            stray.addr.port()
        ),
        "set server web/slot4 state ready".into(),
        "set server web/slot1 state maint".into(),
    ])
    .unwrap();
    // Scale in: the oldest instance goes.
    rt.block_on(
        asg.set_desired_capacity()
            .auto_scaling_group_name("web-asg")
            .desired_capacity(1)
            .send(),
    )
    .unwrap();
    let left = rt.block_on(members(&ec2, &asg, "web-asg"));
    assert_eq!(left.len(), 1);
    let run = h.agent(&["sync"], None).unwrap();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("! web"),
        "the stray server is evicted: {}",
        run.stdout
    );
    let a = h.assignments().unwrap();
    assert_eq!(
        a.keys().cloned().collect::<Vec<_>>(),
        vec![left[0].0.clone()]
    );
    wait_for(Duration::from_secs(5), || {
        let s = h.status().ok()?;
        let up = s.iter().filter(|r| r["status"] == "UP").count();
        (up == 1).then_some(())
    })
    .expect("only the remaining instance serves");
    let before = stray.served().unwrap();
    for _ in 0..10 {
        let r = http::get(fe, "/", Duration::from_secs(5)).unwrap();
        assert_eq!((r.status, r.body.trim()), (200, left[0].0.as_str()));
    }
    assert_eq!(stray.served().unwrap(), before);
    drop(backends);

    // A group AWS does not know is an error, never an empty pool.
    let cfg = std::fs::read_to_string(&h.config).unwrap();
    std::fs::write(&h.config, cfg.replace("\"web-asg\"", "\"web-asg-typo\"")).unwrap();
    let run = h.agent(&["sync"], None).unwrap();
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stderr.contains("web-asg-typo") && run.stderr.contains("refusing to empty"),
        "{}",
        run.stderr
    );
    assert_eq!(h.assignments().unwrap().len(), 1, "nothing was drained");
}
