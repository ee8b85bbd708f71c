//! Schedule operations (SCHEDULE_*): validation and logging here; the rules, the timers and
//! firing live in the core ([`super::core`]'s schedules module).

use taskforge_protocol::{ErrorBody, ErrorCode, ProjectId, Request, Response, ScheduleList};

use super::budget::{encoded_bytes, keep_within};
use super::cron::CronSpec;
use super::{validate, Broker};

type Reply<T> = Result<T, ErrorBody>;

impl Broker {
    /// Runs a schedule operation in the session's project.
    pub(super) async fn handle_schedules(
        &self,
        project_id: ProjectId,
        request: Request,
    ) -> Reply<Response> {
        match request {
            Request::ScheduleCreate(body) => {
                validate::schedule_create(&body, &self.limits, self.now_ms())?;
                self.check_fires(&body.cron, &body.time_zone).await?;
                let info = self
                    .mutate(|core, now_ms| core.schedule_create(project_id, body, now_ms))
                    .await?;
                tracing::info!(
                    project_id,
                    schedule_id = info.schedule_id,
                    name = %info.name,
                    cron = %info.cron,
                    time_zone = %info.time_zone,
                    queue = %info.queue,
                    next_fire_at_ms = ?info.next_fire_at_ms,
                    "schedule created"
                );
                Ok(Response::ScheduleCreate(info))
            }
            Request::ScheduleGet(body) => {
                validate::schedule_key(&body.schedule)?;
                Ok(Response::ScheduleGet(
                    self.mutate(|core, _| core.schedule_get(project_id, &body.schedule))
                        .await?,
                ))
            }
            Request::ScheduleList(body) => {
                if let Some(queue) = &body.queue {
                    validate::queue_name(queue)?;
                }
                let limit = validate::list_limit(body.limit)?;
                let (mut schedules, mut next_after) = self
                    .mutate(|core, _| {
                        Ok(
                            core.schedule_list(
                                project_id,
                                body.queue.as_deref(),
                                body.after,
                                limit,
                            ),
                        )
                    })
                    .await?;
                if keep_within(
                    &mut schedules,
                    self.limits.response_bytes_max as usize,
                    encoded_bytes,
                ) {
                    next_after = schedules.last().map(|info| info.schedule_id);
                }
                Ok(Response::ScheduleList(ScheduleList {
                    schedules,
                    next_after,
                }))
            }
            Request::ScheduleUpdate(body) => {
                validate::schedule_update(&body, &self.limits, self.now_ms())?;
                if let Some(cron) = &body.cron {
                    // The zone may be the stored one; any zone tells whether the expression
                    // can fire at all, which is what this early check is for.
                    self.check_fires(cron, body.time_zone.as_deref().unwrap_or("UTC"))
                        .await?;
                }
                let info = self
                    .mutate(|core, now_ms| core.schedule_update(project_id, body, now_ms))
                    .await?;
                tracing::info!(
                    project_id,
                    schedule_id = info.schedule_id,
                    name = %info.name,
                    cron = %info.cron,
                    time_zone = %info.time_zone,
                    queue = %info.queue,
                    "schedule updated"
                );
                Ok(Response::ScheduleUpdate(info))
            }
            Request::ScheduleDelete(body) => {
                validate::schedule_key(&body.schedule)?;
                let info = self
                    .mutate(|core, _| core.schedule_delete(project_id, &body.schedule))
                    .await?;
                tracing::info!(
                    project_id,
                    schedule_id = info.schedule_id,
                    name = %info.name,
                    fired_count = info.fired_count,
                    "schedule deleted"
                );
                Ok(Response::ScheduleDelete(Default::default()))
            }
            Request::SchedulePause(body) => {
                validate::schedule_key(&body.schedule)?;
                let info = self
                    .mutate(|core, now_ms| {
                        core.schedule_set_paused(project_id, &body.schedule, true, now_ms)
                    })
                    .await?;
                tracing::info!(
                    project_id,
                    schedule_id = info.schedule_id,
                    name = %info.name,
                    "schedule paused"
                );
                Ok(Response::SchedulePause(info))
            }
            Request::ScheduleResume(body) => {
                validate::schedule_key(&body.schedule)?;
                let info = self
                    .mutate(|core, now_ms| {
                        core.schedule_set_paused(project_id, &body.schedule, false, now_ms)
                    })
                    .await?;
                tracing::info!(
                    project_id,
                    schedule_id = info.schedule_id,
                    name = %info.name,
                    next_fire_at_ms = ?info.next_fire_at_ms,
                    "schedule resumed"
                );
                Ok(Response::ScheduleResume(info))
            }
            other => unreachable!("{:?} is not a schedule operation", other.opcode()),
        }
    }

    /// Refuses an expression that has no fire time after now. croner gives up on an
    /// expression that matches no date only after a bounded but long search, so this runs
    /// on a blocking thread, before the core's lock is taken.
    async fn check_fires(&self, cron: &str, time_zone: &str) -> Reply<()> {
        let spec = CronSpec::parse(cron, time_zone)
            .map_err(|error| ErrorBody::new(ErrorCode::InvalidArgument, error.to_string()))?;
        let now_ms = self.now_ms();
        let next = tokio::task::spawn_blocking(move || spec.next_after(now_ms))
            .await
            .map_err(|error| {
                ErrorBody::new(ErrorCode::Internal, format!("cron check failed: {error}"))
            })?;
        match next {
            Some(_) => Ok(()),
            None => Err(ErrorBody::new(
                ErrorCode::InvalidArgument,
                format!("cron: {cron:?} has no fire time after now in {time_zone}"),
            )),
        }
    }
}
