//! Follows a starting container's log as a stream and counts the lines readiness waits
//! for, instead of re-reading the whole log on every poll: a line is seen the moment the
//! engine delivers it, and a chatty JVM's log is read once.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use testcontainers::bollard::container::LogOutput;
use testcontainers::bollard::query_parameters::LogsOptionsBuilder;
use testcontainers::bollard::Docker;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::docker;

/// Counts of each needle in the log so far; wakes waiters on every new output.
pub struct LogWatch {
    counter: Arc<Mutex<Counter>>,
    changed: Arc<Notify>,
    task: JoinHandle<()>,
}

impl LogWatch {
    /// Starts following; the counts start at the log's beginning.
    pub fn follow(docker: &Docker, container_id: &str, needles: Vec<String>) -> Self {
        let counter = Arc::new(Mutex::new(Counter::new(needles)));
        let changed = Arc::new(Notify::new());
        let (docker, id) = (docker.clone(), container_id.to_string());
        let (c, n) = (counter.clone(), changed.clone());
        let task = tokio::spawn(async move {
            let opts = LogsOptionsBuilder::new()
                .stdout(true)
                .stderr(true)
                .follow(true)
                .build();
            let mut stream = docker.logs(&id, Some(opts));
            while let Some(Ok(
                LogOutput::StdOut { message }
                | LogOutput::StdErr { message }
                | LogOutput::Console { message },
            )) = stream.next().await
            {
                if let Ok(mut c) = c.lock() {
                    c.feed(&String::from_utf8_lossy(&message));
                }
                n.notify_waiters();
            }
            // The stream ended (the container stopped) or broke: one full read settles
            // the counts, so nothing delivered in between is missed.
            let all = docker::all_logs(&docker, &id).await;
            if let Ok(mut c) = c.lock() {
                *c = Counter::new(std::mem::take(&mut c.needles));
                c.feed(&all);
            }
            n.notify_waiters();
        });
        Self {
            counter,
            changed,
            task,
        }
    }

    /// How often needle `i` has appeared so far.
    pub fn count(&self, i: usize) -> usize {
        self.counter.lock().map(|c| c.count(i)).unwrap_or(0)
    }

    /// Resolves at the next output (or at once if some arrived since `notified` was made).
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }
}

impl Drop for LogWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Needle counts over complete lines, plus the line still being written.
struct Counter {
    needles: Vec<String>,
    complete: Vec<usize>,
    partial: String,
}

impl Counter {
    fn new(needles: Vec<String>) -> Self {
        Self {
            complete: vec![0; needles.len()],
            needles,
            partial: String::new(),
        }
    }

    fn feed(&mut self, text: &str) {
        self.partial.push_str(text);
        if let Some(end) = self.partial.rfind('\n') {
            let done: String = self.partial.drain(..=end).collect();
            for (count, needle) in self.complete.iter_mut().zip(&self.needles) {
                *count += done.matches(needle.as_str()).count();
            }
        }
    }

    fn count(&self, i: usize) -> usize {
        let Some(needle) = self.needles.get(i) else {
            return 0;
        };
        self.complete[i] + self.partial.matches(needle.as_str()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::whole_lines(&["ready\n", "ready\n"], 2)]
    #[case::split_across_chunks(&["rea", "dy\nre", "ady\n"], 2)]
    #[case::unfinished_line_counts(&["x\nready"], 1)]
    #[case::two_on_one_line(&["ready ready\n"], 2)]
    #[case::absent(&["starting\n"], 0)]
    fn counts_a_line_however_the_log_arrives(#[case] chunks: &[&str], #[case] seen: usize) {
        let mut c = Counter::new(vec!["ready".into()]);
        chunks.iter().for_each(|ch| c.feed(ch));
        assert_eq!(c.count(0), seen);
    }
}
