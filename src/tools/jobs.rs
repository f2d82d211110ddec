//! Tool calls that run on the job runtime ([`crate::jobs`]): `backup-create` and
//! `migration-run` queue a job and wait for it, turning its progress into
//! `notifications/progress` and a cancelled request into a cancelled job. When the call is a
//! task (the 2026-07-28 tasks extension) the task follows the job (`{"kind": "job", "job": …}`),
//! so after a crash or a restart the task is answered from the job's row — the job itself is
//! claimed again by the next runtime and finished there — and can be polled from any
//! connection.

use std::marker::PhantomData;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Value, json};

use crate::mcp::tool::{ToolCtx, ToolError, ToolOutput};

/// The `kind` of a task's backing that follows a job.
pub const JOB_BACKING: &str = "job";

/// A result a job stored as JSON, shown with the schema of `T` (what the tool would have
/// returned had it run in the request).
pub struct Stored<T>(pub Value, PhantomData<T>);

impl<T: Serialize> Stored<T> {
    /// A result computed in the request, shown like a stored one.
    pub fn of(v: &T) -> Stored<T> {
        Stored(
            serde_json::to_value(v).expect("a result is JSON"),
            PhantomData,
        )
    }
}

impl<T> Serialize for Stored<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<T: JsonSchema> JsonSchema for Stored<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(g)
    }
}

/// Waits for job `job` that this call queued, with `events` subscribed to before it queued
/// ([`crate::jobs::Jobs::wait_from`]): its progress becomes the call's
/// `notifications/progress`, a cancelled call cancels the job (at its next safe point), and a
/// task follows the job. Succeeded: the job's result; failed or cancelled: the job's error.
pub async fn follow<T>(
    ctx: &ToolCtx,
    events: tokio::sync::broadcast::Receiver<crate::jobs::JobEvent>,
    job: &str,
) -> Result<Stored<T>, ToolError> {
    if ctx.call.is_task() {
        ctx.call
            .follow(json!({"kind": JOB_BACKING, "job": job}))
            .await;
    }
    let jobs = ctx.app.jobs.clone();
    let wait = jobs.wait_from(events, job, progress_of(ctx));
    tokio::pin!(wait);
    let j = tokio::select! {
        j = &mut wait => j?,
        _ = ctx.call.cancel.cancelled() => {
            jobs.cancel(job).await?;
            wait.await?
        }
    };
    match outcome(&j) {
        Ok(v) => Ok(Stored(v, PhantomData)),
        Err(m) => Err(ToolError::Failed(m)),
    }
}

/// Turns `(progress, total, message)` reports into the call's `notifications/progress`
/// ([`crate::mcp::context::CallContext::progress`]).
pub fn progress_of(ctx: &ToolCtx) -> impl FnMut(f64, Option<f64>, Option<&str>) + Send + 'static {
    let call = ctx.call.clone();
    move |p, t, m| call.progress(p, t, m)
}

/// What an ended job answers: its result, or the reason it did not succeed.
fn outcome(j: &crate::store::jobs::Job) -> Result<Value, String> {
    match j.state.as_str() {
        "succeeded" => Ok(j.result.clone().unwrap_or(Value::Null)),
        "cancelled" => Err(j
            .error
            .clone()
            .unwrap_or_else(|| "Cancelled before it finished".into())),
        _ => Err(j.error.clone().unwrap_or_else(|| "The job failed".into())),
    }
}

/// Lets tasks that follow a job be answered from the job's row when the process that ran the
/// call stopped: nothing while the job is queued or running (on any node), its result or
/// error once it has ended.
pub fn register_task_resumer(app: &Arc<crate::App>) {
    let weak = Arc::downgrade(app);
    app.mcp_tasks.register_resumer(
        JOB_BACKING,
        Arc::new(move |b: Value| {
            let weak = weak.clone();
            Box::pin(async move {
                let app = weak.upgrade()?;
                let id = b.get("job")?.as_str()?.to_string();
                let out = match app.jobs.get(&id).await {
                    Ok(Some(j)) if matches!(j.state.as_str(), "queued" | "running") => return None,
                    Ok(Some(j)) => match outcome(&j) {
                        Ok(v) => ToolOutput::Json(v.to_string()),
                        Err(m) => ToolOutput::Err(m),
                    },
                    Ok(None) => ToolOutput::Err(format!("The job {id} this task followed is gone")),
                    Err(e) => ToolOutput::Err(crate::error::internal("reading a task's job", &e)),
                };
                Some(Ok(out.into_result()))
            })
        }),
    );
}
