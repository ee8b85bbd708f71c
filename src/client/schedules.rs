//! One typed method per cron schedule operation (SCHEDULE_*), built like
//! `operations.rs`: each builds the request body, goes through [`Client::call`] and unpacks
//! the matching response.

use taskforge_protocol::{
    ScheduleCreate, ScheduleId, ScheduleInfo, ScheduleKey, ScheduleList, ScheduleListRequest,
    ScheduleRef, ScheduleUpdate,
};

use super::{Client, ClientError};

impl Client {
    /// SCHEDULE_CREATE: creates a cron schedule. A bad expression or zone is
    /// [`taskforge_protocol::ErrorCode::InvalidArgument`] naming the field; a taken name is
    /// [`taskforge_protocol::ErrorCode::Conflict`].
    pub async fn schedule_create(
        &self,
        request: ScheduleCreate,
    ) -> Result<ScheduleInfo, ClientError> {
        call_expecting!(self, ScheduleCreate, request)
    }

    /// SCHEDULE_GET: reads a schedule by id or name.
    pub async fn schedule_get(&self, schedule: ScheduleKey) -> Result<ScheduleInfo, ClientError> {
        call_expecting!(self, ScheduleGet, ScheduleRef::from(schedule))
    }

    /// SCHEDULE_LIST: one page of schedules in id order (only those of `queue`, if given),
    /// starting after `after`.
    pub async fn schedule_list(
        &self,
        queue: Option<String>,
        after: Option<ScheduleId>,
        limit: u32,
    ) -> Result<ScheduleList, ClientError> {
        call_expecting!(
            self,
            ScheduleList,
            ScheduleListRequest {
                queue,
                after,
                limit
            }
        )
    }

    /// SCHEDULE_UPDATE: changes the fields that are `Some`; the others stay.
    pub async fn schedule_update(
        &self,
        update: ScheduleUpdate,
    ) -> Result<ScheduleInfo, ClientError> {
        call_expecting!(self, ScheduleUpdate, update)
    }

    /// SCHEDULE_DELETE: deletes a schedule; the jobs it enqueued stay.
    pub async fn schedule_delete(&self, schedule: ScheduleKey) -> Result<(), ClientError> {
        call_expecting!(self, ScheduleDelete, ScheduleRef::from(schedule)).map(|_| ())
    }

    /// SCHEDULE_PAUSE: stops a schedule from firing.
    pub async fn schedule_pause(&self, schedule: ScheduleKey) -> Result<ScheduleInfo, ClientError> {
        call_expecting!(self, SchedulePause, ScheduleRef::from(schedule))
    }

    /// SCHEDULE_RESUME: lets a paused schedule fire again from its next fire time after now.
    pub async fn schedule_resume(
        &self,
        schedule: ScheduleKey,
    ) -> Result<ScheduleInfo, ClientError> {
        call_expecting!(self, ScheduleResume, ScheduleRef::from(schedule))
    }
}
