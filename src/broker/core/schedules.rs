//! Cron schedules: each enqueues a copy of its job template at the fire times of a cron
//! expression in a time zone ([`crate::broker::cron`] computes them).
//!
//! Like the rest of the core this reads no clock: fire times are compared with the `now_ms`
//! passed in. Next fire times live in a timer heap (like the workers' timers) that
//! [`Core::advance`] drains and [`Core::next_timer_at`] reports; stale entries (a schedule
//! changed, paused or deleted since) are recognised and skipped when they come up.
//!
//! Firing goes through the core's normal enqueue path (quotas, rate limits and all), in the
//! same storage batch as the schedule's own record, so a fire is durable as a whole or not at
//! all: a restart never fires the same time twice. While the broker runs, a timer that fires
//! late (after several fire times) enqueues one job and moves on to the next fire time after
//! now. What happens to fire times that passed while the broker was down is the schedule's
//! missed-run policy, applied by [`Core::restore_schedule`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use taskforge_protocol::{
    limits, JobId, MissedRunPolicy, NewJob, OverlapPolicy, ProjectId, ScheduleCreate, ScheduleId,
    ScheduleInfo, ScheduleKey, ScheduleUpdate, FIRE_AT_METADATA_KEY, SCHEDULE_ID_METADATA_KEY,
};

use super::{Core, CoreError};
use crate::broker::cron::CronSpec;
use crate::storage::records;
use crate::storage::{keys, Write};

/// A schedule in memory.
#[derive(Debug, Clone)]
struct Schedule {
    /// Its project.
    project_id: ProjectId,
    /// Its stored form, kept current.
    info: ScheduleInfo,
    /// The parsed expression and zone; `None` only for a stored schedule whose expression or
    /// zone no longer parses (logged at restore), which never fires until updated.
    spec: Option<CronSpec>,
}

/// Every schedule and the timers of their next fire times.
#[derive(Debug, Default)]
pub(super) struct Schedules {
    /// Schedules by id.
    by_id: BTreeMap<ScheduleId, Schedule>,
    /// Project → name → id.
    names: HashMap<ProjectId, BTreeMap<String, ScheduleId>>,
    /// Next fire times, earliest first (may hold stale entries).
    timers: BinaryHeap<Reverse<(u64, ScheduleId)>>,
    /// Next schedule id (0 until the first is made or restored: ids start at 1).
    id_next: ScheduleId,
}

impl Schedules {
    /// The earliest schedule timer, if any.
    pub(super) fn next_timer_at(&self) -> Option<u64> {
        self.timers.peek().map(|Reverse((at_ms, _))| *at_ms)
    }
}

fn not_found(schedule: &ScheduleKey) -> CoreError {
    CoreError::NotFound(format!("schedule {schedule} not found"))
}

fn never_fires(cron: &str, time_zone: &str) -> CoreError {
    CoreError::InvalidArgument(format!(
        "cron: {cron:?} has no fire time after now in {time_zone}"
    ))
}

fn parse_spec(cron: &str, time_zone: &str) -> Result<CronSpec, CoreError> {
    CronSpec::parse(cron, time_zone).map_err(|error| CoreError::InvalidArgument(error.to_string()))
}

impl Core {
    /// Restores the schedule id counter.
    pub fn restore_schedule_id_next(&mut self, schedule_id_next: Option<u64>) {
        if let Some(next) = schedule_id_next {
            self.schedules.id_next = self.schedules.id_next.max(next);
        }
    }

    /// Restores one stored schedule and applies its missed-run policy: when its stored next
    /// fire time is before `now_ms` (the broker was down then), `RunOnce` keeps that time, so
    /// the first timer pass enqueues exactly one job, and `Skip` moves on to the first fire
    /// time after `now_ms` (a write, so memory keeps mirroring storage).
    pub fn restore_schedule(&mut self, project_id: ProjectId, mut info: ScheduleInfo, now_ms: u64) {
        let schedule_id = info.schedule_id;
        self.schedules.id_next = self.schedules.id_next.max(schedule_id + 1);
        let spec = match CronSpec::parse(&info.cron, &info.time_zone) {
            Ok(spec) => Some(spec),
            Err(error) => {
                tracing::error!(
                    project_id,
                    schedule_id,
                    name = %info.name,
                    %error,
                    "stored schedule no longer parses; it will not fire until updated"
                );
                None
            }
        };
        let missed_from_ms = info
            .next_fire_at_ms
            .filter(|next_ms| !info.paused && *next_ms < now_ms);
        let mut rewritten = false;
        if let Some(missed_from_ms) = missed_from_ms {
            match info.missed_runs {
                MissedRunPolicy::RunOnce => tracing::info!(
                    project_id,
                    schedule_id,
                    name = %info.name,
                    missed_from_ms,
                    "schedule missed fire times while the broker was down; running it once"
                ),
                MissedRunPolicy::Skip => {
                    tracing::info!(
                        project_id,
                        schedule_id,
                        name = %info.name,
                        missed_from_ms,
                        "schedule missed fire times while the broker was down; skipping them"
                    );
                    info.next_fire_at_ms = spec.as_ref().and_then(|spec| spec.next_after(now_ms));
                    info.skipped_count += 1;
                    info.last_skipped_at_ms = Some(now_ms);
                    info.last_skip_reason = Some(format!(
                        "fire times from {missed_from_ms} ms missed while the broker was down \
                         (missed-run policy skip)"
                    ));
                    rewritten = true;
                }
            }
        }
        self.schedules
            .names
            .entry(project_id)
            .or_default()
            .insert(info.name.clone(), schedule_id);
        self.schedules.by_id.insert(
            schedule_id,
            Schedule {
                project_id,
                info,
                spec,
            },
        );
        if rewritten {
            self.persist_schedule(schedule_id);
        }
        self.arm_schedule_timer(schedule_id);
    }

    /// Creates a schedule (fields already validated by the service, except what needs
    /// state: the queue must exist, the name be free, the project below its schedule cap).
    pub fn schedule_create(
        &mut self,
        project_id: ProjectId,
        request: ScheduleCreate,
        now_ms: u64,
    ) -> Result<ScheduleInfo, CoreError> {
        self.queue_id(project_id, &request.queue)?;
        let names = self.schedules.names.get(&project_id);
        if names.is_some_and(|names| names.contains_key(&request.name)) {
            return Err(CoreError::Conflict(format!(
                "a schedule named {:?} already exists",
                request.name
            )));
        }
        let count = names.map_or(0, BTreeMap::len);
        if count >= limits::SCHEDULES_PER_PROJECT_MAX {
            return Err(CoreError::Quota {
                limit: "schedules_per_project",
                current: count as u64,
                max: limits::SCHEDULES_PER_PROJECT_MAX as u64,
            });
        }
        let spec = parse_spec(&request.cron, &request.time_zone)?;
        let next_fire_at_ms = spec.next_after(now_ms);
        if next_fire_at_ms.is_none() {
            return Err(never_fires(&request.cron, &request.time_zone));
        }
        let schedule_id = self.schedules.id_next.max(1);
        self.schedules.id_next = schedule_id + 1;
        self.writes.push(Write::Put(
            keys::META_SCHEDULE_ID_NEXT.to_vec(),
            self.schedules.id_next.to_be_bytes().to_vec(),
        ));
        let info = ScheduleInfo {
            schedule_id,
            name: request.name,
            cron: request.cron,
            time_zone: request.time_zone,
            queue: request.queue,
            template: request.template,
            overlap: request.overlap,
            missed_runs: request.missed_runs,
            paused: request.paused,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            next_fire_at_ms: if request.paused {
                None
            } else {
                next_fire_at_ms
            },
            last_fired_at_ms: None,
            last_job_id: None,
            fired_count: 0,
            skipped_count: 0,
            last_skipped_at_ms: None,
            last_skip_reason: None,
        };
        self.schedules
            .names
            .entry(project_id)
            .or_default()
            .insert(info.name.clone(), schedule_id);
        self.schedules.by_id.insert(
            schedule_id,
            Schedule {
                project_id,
                info: info.clone(),
                spec: Some(spec),
            },
        );
        self.persist_schedule(schedule_id);
        self.arm_schedule_timer(schedule_id);
        Ok(info)
    }

    /// One schedule of the project.
    pub fn schedule_get(
        &self,
        project_id: ProjectId,
        schedule: &ScheduleKey,
    ) -> Result<ScheduleInfo, CoreError> {
        let schedule_id = self.schedule_id_of(project_id, schedule)?;
        Ok(self.schedules.by_id[&schedule_id].info.clone())
    }

    /// A page of the project's schedules in id order (only those of `queue`, if given), and
    /// the cursor for the next page.
    pub fn schedule_list(
        &self,
        project_id: ProjectId,
        queue: Option<&str>,
        after: Option<ScheduleId>,
        limit: usize,
    ) -> (Vec<ScheduleInfo>, Option<ScheduleId>) {
        let start = after.map_or(0, |after| after.saturating_add(1));
        let mut matching = self
            .schedules
            .by_id
            .range(start..)
            .map(|(_, schedule)| schedule)
            .filter(|schedule| schedule.project_id == project_id)
            .filter(|schedule| queue.is_none_or(|queue| schedule.info.queue == queue));
        let page: Vec<ScheduleInfo> = matching
            .by_ref()
            .take(limit)
            .map(|schedule| schedule.info.clone())
            .collect();
        let next_after = match matching.next() {
            Some(_) => page.last().map(|info| info.schedule_id),
            None => None,
        };
        (page, next_after)
    }

    /// Changes a schedule. A new expression or zone computes the next fire time again from
    /// `now_ms`; a new queue carries the template with it. Nothing changes unless every
    /// check passes.
    pub fn schedule_update(
        &mut self,
        project_id: ProjectId,
        update: ScheduleUpdate,
        now_ms: u64,
    ) -> Result<ScheduleInfo, CoreError> {
        let schedule_id = self.schedule_id_of(project_id, &update.schedule)?;
        let current = self.schedules.by_id[&schedule_id].info.clone();
        if let Some(name) = update.name.as_ref().filter(|name| **name != current.name) {
            let taken = self
                .schedules
                .names
                .get(&project_id)
                .is_some_and(|names| names.contains_key(name));
            if taken {
                return Err(CoreError::Conflict(format!(
                    "a schedule named {name:?} already exists"
                )));
            }
        }
        let queue = update
            .queue
            .clone()
            .unwrap_or_else(|| current.queue.clone());
        if queue != current.queue {
            self.queue_id(project_id, &queue)?;
        }
        let mut template = update
            .template
            .clone()
            .unwrap_or_else(|| current.template.clone());
        if update.template.is_some() && template.queue != queue {
            return Err(CoreError::InvalidArgument(format!(
                "template.queue {:?} must equal the schedule's queue {queue:?}",
                template.queue
            )));
        }
        template.queue = queue.clone();
        let retimed = update.cron.is_some() || update.time_zone.is_some();
        let cron = update.cron.unwrap_or_else(|| current.cron.clone());
        let time_zone = update
            .time_zone
            .unwrap_or_else(|| current.time_zone.clone());
        let new_spec = if retimed {
            let spec = parse_spec(&cron, &time_zone)?;
            if spec.next_after(now_ms).is_none() {
                return Err(never_fires(&cron, &time_zone));
            }
            Some(spec)
        } else {
            None
        };
        let schedule = self
            .schedules
            .by_id
            .get_mut(&schedule_id)
            .expect("looked up above under the same lock");
        if let Some(spec) = new_spec {
            if !schedule.info.paused {
                schedule.info.next_fire_at_ms = spec.next_after(now_ms);
            }
            schedule.spec = Some(spec);
        }
        let info = &mut schedule.info;
        if let Some(name) = update.name {
            if let Some(names) = self.schedules.names.get_mut(&project_id) {
                names.remove(&info.name);
                names.insert(name.clone(), schedule_id);
            }
            info.name = name;
        }
        info.cron = cron;
        info.time_zone = time_zone;
        info.queue = queue;
        info.template = template;
        if let Some(overlap) = update.overlap {
            info.overlap = overlap;
        }
        if let Some(missed_runs) = update.missed_runs {
            info.missed_runs = missed_runs;
        }
        info.updated_at_ms = now_ms;
        let info = info.clone();
        self.persist_schedule(schedule_id);
        if retimed {
            self.arm_schedule_timer(schedule_id);
        }
        Ok(info)
    }

    /// Deletes a schedule; returns what it was.
    pub fn schedule_delete(
        &mut self,
        project_id: ProjectId,
        schedule: &ScheduleKey,
    ) -> Result<ScheduleInfo, CoreError> {
        let schedule_id = self.schedule_id_of(project_id, schedule)?;
        let removed = self
            .schedules
            .by_id
            .remove(&schedule_id)
            .expect("looked up above under the same lock");
        if let Some(names) = self.schedules.names.get_mut(&project_id) {
            names.remove(&removed.info.name);
        }
        self.writes
            .push(Write::Delete(keys::schedule(project_id, schedule_id)));
        Ok(removed.info)
    }

    /// Pauses (no fire time) or resumes (the next fire time after `now_ms`; fire times that
    /// passed while paused are not made up) a schedule. Pausing a paused schedule or resuming
    /// a running one changes nothing.
    pub fn schedule_set_paused(
        &mut self,
        project_id: ProjectId,
        schedule: &ScheduleKey,
        paused: bool,
        now_ms: u64,
    ) -> Result<ScheduleInfo, CoreError> {
        let schedule_id = self.schedule_id_of(project_id, schedule)?;
        let entry = self
            .schedules
            .by_id
            .get_mut(&schedule_id)
            .expect("looked up above under the same lock");
        if entry.info.paused == paused {
            return Ok(entry.info.clone());
        }
        entry.info.paused = paused;
        entry.info.updated_at_ms = now_ms;
        entry.info.next_fire_at_ms = if paused {
            None
        } else {
            entry.spec.as_ref().and_then(|spec| spec.next_after(now_ms))
        };
        let info = entry.info.clone();
        self.persist_schedule(schedule_id);
        self.arm_schedule_timer(schedule_id);
        Ok(info)
    }

    /// Refuses to delete a queue that a schedule of its project enqueues into.
    pub(super) fn check_no_schedule_targets(
        &self,
        project_id: ProjectId,
        queue: &str,
    ) -> Result<(), CoreError> {
        let target = self
            .schedules
            .by_id
            .values()
            .find(|schedule| schedule.project_id == project_id && schedule.info.queue == queue);
        match target {
            Some(schedule) => Err(CoreError::Conflict(format!(
                "queue {queue:?} is the target of schedule {:?}; delete the schedule or move \
                 it to another queue first",
                schedule.info.name
            ))),
            None => Ok(()),
        }
    }

    /// Fires every schedule whose fire time is due at `now_ms`.
    pub(super) fn advance_schedules(&mut self, now_ms: u64) {
        while let Some(Reverse((at_ms, schedule_id))) = self.schedules.timers.peek().copied() {
            if at_ms > now_ms {
                break;
            }
            self.schedules.timers.pop();
            let due = self
                .schedules
                .by_id
                .get(&schedule_id)
                .is_some_and(|schedule| {
                    !schedule.info.paused && schedule.info.next_fire_at_ms == Some(at_ms)
                });
            if due {
                self.fire_schedule(schedule_id, at_ms, now_ms);
            }
        }
    }

    /// Handles fire time `at_ms` of a schedule at `now_ms`: enqueues its template (unless the
    /// overlap policy says skip), records the outcome and moves to the next fire time after
    /// `now_ms`.
    fn fire_schedule(&mut self, schedule_id: ScheduleId, at_ms: u64, now_ms: u64) {
        let Some(schedule) = self.schedules.by_id.get(&schedule_id) else {
            return;
        };
        let project_id = schedule.project_id;
        let live_previous = schedule
            .info
            .last_job_id
            .filter(|job_id| self.jobs.contains_key(job_id));
        let outcome = match (schedule.info.overlap, live_previous) {
            (OverlapPolicy::Skip, Some(job_id)) => Err(format!(
                "the previous run's job {job_id} is still live (overlap policy skip)"
            )),
            _ => {
                let mut job = schedule.info.template.clone();
                job.queue.clone_from(&schedule.info.queue);
                job.metadata
                    .push((SCHEDULE_ID_METADATA_KEY.to_owned(), schedule_id.to_string()));
                job.metadata
                    .push((FIRE_AT_METADATA_KEY.to_owned(), at_ms.to_string()));
                self.fire_enqueue(project_id, job, now_ms).map_err(|error| {
                    format!("the enqueue was refused: {}", error.to_error_body().message)
                })
            }
        };
        let Some(schedule) = self.schedules.by_id.get_mut(&schedule_id) else {
            return;
        };
        let info = &mut schedule.info;
        match outcome {
            Ok(job_id) => {
                info.last_fired_at_ms = Some(now_ms);
                info.last_job_id = Some(job_id);
                info.fired_count += 1;
                tracing::info!(
                    project_id,
                    schedule_id,
                    name = %info.name,
                    queue = %info.queue,
                    %job_id,
                    fire_at_ms = at_ms,
                    "schedule fired"
                );
            }
            Err(reason) => {
                tracing::info!(
                    project_id,
                    schedule_id,
                    name = %info.name,
                    fire_at_ms = at_ms,
                    %reason,
                    "schedule fire time skipped"
                );
                info.skipped_count += 1;
                info.last_skipped_at_ms = Some(now_ms);
                info.last_skip_reason = Some(reason);
            }
        }
        info.next_fire_at_ms = schedule
            .spec
            .as_ref()
            .and_then(|spec| spec.next_after(now_ms));
        self.persist_schedule(schedule_id);
        self.arm_schedule_timer(schedule_id);
    }

    /// Enqueues one job for a schedule through the core's normal enqueue path (quotas, rate
    /// limits, waking long-polls). The only place schedules create jobs: adapt it here if
    /// [`Core::enqueue`]'s signature changes.
    fn fire_enqueue(
        &mut self,
        project_id: ProjectId,
        job: NewJob,
        now_ms: u64,
    ) -> Result<JobId, CoreError> {
        // A template never names parents, so nothing needs reading from storage. A
        // template's unique key may make the fire a duplicate: the existing job then
        // stands for this run.
        let created = self
            .enqueue(project_id, vec![job], &super::StoredParents::new(), now_ms)
            .map_err(|(_, error)| error)?;
        Ok(created[0].job_id)
    }

    /// The id of a schedule of the project; another project's schedule is reported exactly
    /// like a missing one.
    fn schedule_id_of(
        &self,
        project_id: ProjectId,
        schedule: &ScheduleKey,
    ) -> Result<ScheduleId, CoreError> {
        let found = match schedule {
            ScheduleKey::Id(schedule_id) => self
                .schedules
                .by_id
                .get(schedule_id)
                .filter(|entry| entry.project_id == project_id)
                .map(|_| *schedule_id),
            ScheduleKey::Name(name) => self
                .schedules
                .names
                .get(&project_id)
                .and_then(|names| names.get(name))
                .copied(),
        };
        found.ok_or_else(|| not_found(schedule))
    }

    /// Pushes the schedule's next fire time on the timer heap, noting whether it is now the
    /// earliest timer.
    fn arm_schedule_timer(&mut self, schedule_id: ScheduleId) {
        let Some(at_ms) = self
            .schedules
            .by_id
            .get(&schedule_id)
            .filter(|schedule| !schedule.info.paused && schedule.spec.is_some())
            .and_then(|schedule| schedule.info.next_fire_at_ms)
        else {
            return;
        };
        if self
            .next_timer_at()
            .is_none_or(|earliest_ms| at_ms < earliest_ms)
        {
            self.timers_lowered = true;
        }
        self.schedules.timers.push(Reverse((at_ms, schedule_id)));
    }

    fn persist_schedule(&mut self, schedule_id: ScheduleId) {
        if let Some(schedule) = self.schedules.by_id.get(&schedule_id) {
            self.writes.push(Write::Put(
                keys::schedule(schedule.project_id, schedule_id),
                records::encode(&schedule.info),
            ));
        }
    }
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
