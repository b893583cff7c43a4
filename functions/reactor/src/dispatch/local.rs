//! Runs the agent binary directly, once per configured host: the embedded demo and the
//! end-to-end tests use this instead of SSM (same reactor code, another transport).

use std::process::Stdio;
use std::time::Instant;

use infra::Change;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::{parse_agent_output, DispatchError, Dispatcher, HostResult};

/// Runs `<prefix...> apply --json --file -` with the change on stdin for each host.
#[derive(Debug, Clone)]
pub struct LocalDispatcher {
    hosts: Vec<Vec<String>>,
}

impl LocalDispatcher {
    /// One argv prefix per host, e.g. `["/path/agent", "--config", "/tmp/h1/agent.toml"]`.
    pub fn new(hosts: Vec<Vec<String>>) -> Self {
        Self { hosts }
    }

    /// The configured argv prefixes.
    pub fn hosts(&self) -> &[Vec<String>] {
        &self.hosts
    }
}

/// The host name of the `i`-th local host.
pub fn local_host_name(i: usize) -> String {
    format!("local-{i}")
}

async fn run_one(
    argv: Vec<String>,
    input: String,
    deadline: Instant,
) -> Result<infra::Report, String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("empty agent command line".into());
    };
    let mut child = Command::new(program)
        .args(args)
        .args(["apply", "--json", "--file", "-"])
        // Its own process group: a Ctrl-C meant for the program running the reactor
        // (the demo) does not kill an agent halfway through an apply.
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("could not start {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // An agent that exits before reading everything is judged by its output.
        if let Err(e) = stdin.write_all(input.as_bytes()).await {
            tracing::debug!(error = %e, "agent closed its input early");
        }
        drop(stdin);
    }
    let wait = tokio::time::timeout_at(deadline.into(), child.wait_with_output()).await;
    match wait {
        Err(_) => Err("no answer before the deadline; the agent was stopped".into()),
        Ok(Err(e)) => Err(format!("waiting for the agent failed: {e}")),
        Ok(Ok(out)) => parse_agent_output(
            out.status.code(),
            &String::from_utf8_lossy(&out.stdout),
            &String::from_utf8_lossy(&out.stderr),
        ),
    }
}

impl Dispatcher for LocalDispatcher {
    async fn dispatch(
        &self,
        change: &Change,
        _group: &str,
        deadline: Instant,
    ) -> Result<Vec<HostResult>, DispatchError> {
        let input = change.to_json();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, argv) in self.hosts.iter().enumerate() {
            let argv = argv.clone();
            let input = input.clone();
            tasks.spawn(async move { (i, run_one(argv, input, deadline).await) });
        }
        let mut results: Vec<(usize, HostResult)> = Vec::with_capacity(self.hosts.len());
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((i, outcome)) => results.push((
                    i,
                    HostResult {
                        host: local_host_name(i),
                        outcome,
                    },
                )),
                Err(e) => tracing::error!(error = %e, "a local dispatch task failed"),
            }
        }
        // A task that died is still a host that did not answer.
        for i in 0..self.hosts.len() {
            if !results.iter().any(|(j, _)| *j == i) {
                results.push((
                    i,
                    HostResult::failed(local_host_name(i), "dispatch task failed"),
                ));
            }
        }
        results.sort_by_key(|(i, _)| *i);
        Ok(results.into_iter().map(|(_, r)| r).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into(), "agent".into()]
    }

    #[tokio::test]
    async fn runs_each_host_with_the_change_on_stdin() {
        // The "agent" echoes a report naming the generation it read on stdin.
        let ok = sh(
            r#"test "$1 $2 $3 $4" = "apply --json --file -" || exit 2; g=$(sed 's/.*"generation":\([0-9]*\).*/\1/'); printf '{"host":"h","generation":%s,"ok":true,"reloads":0,"outcomes":[]}' "$g""#,
        );
        let bad = sh("echo boom >&2; exit 2");
        let slow = sh("sleep 5");
        let d = LocalDispatcher::new(vec![ok, bad, slow, vec![]]);
        let change = Change::new(77, vec![]);
        let deadline = Instant::now() + Duration::from_millis(1500);
        let started = Instant::now();
        let r = d.dispatch(&change, "g", deadline).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(4));
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].host, "local-0");
        assert_eq!(r[0].outcome.as_ref().unwrap().generation, 77);
        let e = r[1].outcome.as_ref().unwrap_err();
        assert!(e.contains("code 2") && e.contains("boom"), "{e}");
        assert!(r[2].outcome.as_ref().unwrap_err().contains("deadline"));
        assert!(r[3].outcome.as_ref().unwrap_err().contains("empty"));
    }
}
