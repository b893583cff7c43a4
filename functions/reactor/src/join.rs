//! Running a few futures side by side on the task that awaits them (no spawned task,
//! so borrowed arguments are fine): completions of a batch, the commands of a change.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// Runs `futures` side by side; their outputs in their order.
pub(crate) async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn outputs_come_in_the_order_of_their_futures_whatever_ends_first() {
        let delays = [30u64, 0, 10];
        let futures = delays.iter().enumerate().map(|(i, ms)| async move {
            tokio::time::sleep(std::time::Duration::from_millis(*ms)).await;
            i
        });
        assert_eq!(join_all(futures.collect()).await, vec![0, 1, 2]);
    }
}
