//! Tenancy through a real server: isolation between projects, scopes and roles, the API
//! key lifecycle, and what is stored of secrets.

use std::time::Duration;

use taskforge::client::{Client, ClientError, ClientOptions};
use taskforge_protocol::{
    ApiKeyCreate, ApiKeyRef, ApiKeyRotate, ApiKeySecret, Credentials, ErrorCode, FetchRequest,
    JobId, JobListRequest, OrgCreate, OrgId, OrgRef, Plan, Project, ProjectCreate, ProjectId,
    QueueSettings, Request, Response, Role, Scope, SubscriptionSet, SubscriptionStatus, User,
    UserCreate,
};

use crate::support::{job, TestServer};

pub const ALL_SCOPES: [Scope; 4] = [Scope::Produce, Scope::Consume, Scope::Manage, Scope::Read];

pub async fn call(client: &Client, request: Request) -> Response {
    client.call(request).await.expect("call succeeds")
}

pub use crate::support::code;

pub async fn org(root: &Client, slug: &str) -> OrgId {
    let request = Request::OrgCreate(OrgCreate {
        name: slug.into(),
        slug: slug.into(),
        plan: Plan::Pro,
    });
    match call(root, request).await {
        Response::OrgCreate(org) => org.org_id,
        other => panic!("unexpected {other:?}"),
    }
}

pub async fn project(client: &Client, org_id: OrgId, slug: &str) -> Project {
    let request = Request::ProjectCreate(ProjectCreate {
        org_id,
        name: slug.into(),
        slug: slug.into(),
    });
    match call(client, request).await {
        Response::ProjectCreate(project) => project,
        other => panic!("unexpected {other:?}"),
    }
}

pub async fn key(
    client: &Client,
    project_id: ProjectId,
    scopes: &[Scope],
    expires_at_ms: Option<u64>,
) -> ApiKeySecret {
    let request = Request::ApiKeyCreate(ApiKeyCreate {
        project_id,
        name: "test key".into(),
        scopes: scopes.to_vec(),
        expires_at_ms,
    });
    match call(client, request).await {
        Response::ApiKeyCreate(secret) => secret,
        other => panic!("unexpected {other:?}"),
    }
}

pub async fn user(root: &Client, org_id: OrgId, email: &str, role: Role) -> User {
    let request = Request::UserCreate(UserCreate {
        org_id,
        email: email.into(),
        password: "a long enough password".into(),
        role,
    });
    match call(root, request).await {
        Response::UserCreate(user) => user,
        other => panic!("unexpected {other:?}"),
    }
}

pub async fn connect(
    server: &TestServer,
    credentials: Credentials,
    project_id: Option<ProjectId>,
) -> Result<Client, ClientError> {
    let mut options = ClientOptions::new(credentials);
    options.project_id = project_id;
    Client::connect(server.addr(), options).await
}

pub async fn with_key(server: &TestServer, secret: &ApiKeySecret) -> Client {
    connect(server, Credentials::ApiKey(secret.secret.clone()), None)
        .await
        .expect("key connects")
}

pub fn fetch(queue: &str) -> FetchRequest {
    FetchRequest {
        queues: vec![queue.into()],
        max_jobs: 10,
        wait_ms: 0,
        lease_ms: None,
        worker_id: None,
        weights: Vec::new(),
    }
}

#[tokio::test]
async fn a_project_key_sees_nothing_of_another_project() {
    let server = TestServer::start().await;
    let root = server.client().await;
    let org_a = org(&root, "org-a").await;
    let org_b = org(&root, "org-b").await;
    let project_a = project(&root, org_a, "pa").await;
    let project_b = project(&root, org_b, "pb").await;
    let a = with_key(
        &server,
        &key(&root, project_a.project_id, &ALL_SCOPES, None).await,
    )
    .await;
    let b = with_key(
        &server,
        &key(&root, project_b.project_id, &ALL_SCOPES, None).await,
    )
    .await;

    a.queue_create("q", QueueSettings::default())
        .await
        .expect("a's queue");
    b.queue_create("q", QueueSettings::default())
        .await
        .expect("the same name is another queue in b");
    let a_job = a.enqueue(job("q", b"a")).await.expect("enqueue").job_id;
    let b_job = b.enqueue(job("q", b"b")).await.expect("enqueue").job_id;
    b.enqueue(job("q", b"b2")).await.expect("enqueue");
    assert_eq!(a.queue_stats("q").await.expect("stats").counts.ready, 1);
    assert_eq!(b.queue_stats("q").await.expect("stats").counts.ready, 2);

    let guessed = JobId([0x42; 16]);
    for target in [b_job, guessed] {
        let errors = [
            a.job_get(target).await.expect_err("get"),
            a.cancel(target).await.expect_err("cancel"),
            a.ack(target, 1, None).await.expect_err("ack"),
            a.fail(target, 1, "x", taskforge_protocol::Retry::Never)
                .await
                .expect_err("fail"),
            a.extend(target, 1, 1_000).await.expect_err("extend"),
        ];
        for error in errors {
            match error {
                ClientError::Server(body) => {
                    assert_eq!(body.error_code(), ErrorCode::NotFound);
                    assert_eq!(
                        body.message, "job not found",
                        "the same answer for exists-elsewhere and missing"
                    );
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let delivered = a.fetch(fetch("q")).await.expect("fetch").jobs;
    assert_eq!(
        delivered.iter().map(|job| job.job_id).collect::<Vec<_>>(),
        vec![a_job]
    );
    assert_eq!(code(a.queue_get("only-in-b").await), ErrorCode::NotFound);
    let listed = a
        .job_list(JobListRequest {
            queue: "q".into(),
            state: None,
            after: None,
            limit: 100,
        })
        .await
        .expect("list");
    assert_eq!(listed.jobs.len(), 1);
    assert_eq!(
        b.queue_stats("q").await.expect("stats").counts.ready,
        2,
        "b is untouched"
    );
    let peek = a
        .call(Request::ProjectGet(taskforge_protocol::ProjectRef {
            project_id: project_b.project_id,
        }))
        .await;
    assert_eq!(
        code(peek),
        ErrorCode::Forbidden,
        "keys use no tenancy operation"
    );
}

#[tokio::test]
async fn scopes_and_roles_limit_what_a_session_may_do() {
    let server = TestServer::start().await;
    let root = server.client().await;
    let org_id = org(&root, "acme").await;
    let project_id = project(&root, org_id, "jobs").await.project_id;
    root.queue_create("q", QueueSettings::default())
        .await
        .expect("default project queue");
    let admin = with_key(
        &server,
        &key(&root, project_id, &[Scope::Manage], None).await,
    )
    .await;
    admin
        .queue_create("q", QueueSettings::default())
        .await
        .expect("manage creates queues");

    let produce = with_key(
        &server,
        &key(&root, project_id, &[Scope::Produce], None).await,
    )
    .await;
    let consume = with_key(
        &server,
        &key(&root, project_id, &[Scope::Consume], None).await,
    )
    .await;
    let read = with_key(&server, &key(&root, project_id, &[Scope::Read], None).await).await;
    let job_id = produce
        .enqueue(job("q", b"x"))
        .await
        .expect("produce enqueues")
        .job_id;
    assert_eq!(code(produce.fetch(fetch("q")).await), ErrorCode::Forbidden);
    assert_eq!(
        code(produce.ack(job_id, 1, None).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(consume.enqueue(job("q", b"y")).await),
        ErrorCode::Forbidden
    );
    let leased = consume
        .fetch(fetch("q"))
        .await
        .expect("consume fetches")
        .jobs;
    assert_eq!(leased.len(), 1);
    assert_eq!(
        code(read.enqueue(job("q", b"z")).await),
        ErrorCode::Forbidden
    );
    assert_eq!(code(read.queue_pause("q").await), ErrorCode::Forbidden);
    assert_eq!(code(read.cancel(job_id).await), ErrorCode::Forbidden);
    assert_eq!(
        code(read.ack(job_id, leased[0].lease_id, None).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        read.job_get(job_id).await.expect("read reads").job_id,
        job_id
    );

    user(&root, org_id, "viewer@acme.test", Role::Viewer).await;
    let member_user = user(&root, org_id, "member@acme.test", Role::Member).await;
    let password = |email: &str| Credentials::Password {
        email: email.into(),
        password: "a long enough password".into(),
    };
    let viewer = connect(&server, password("viewer@acme.test"), Some(project_id))
        .await
        .expect("viewer logs in");
    let create_key = Request::ApiKeyCreate(ApiKeyCreate {
        project_id,
        name: "nope".into(),
        scopes: vec![Scope::Read],
        expires_at_ms: None,
    });
    assert_eq!(
        code(viewer.call(create_key.clone()).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(viewer.enqueue(job("q", b"v")).await),
        ErrorCode::Forbidden
    );
    assert!(viewer.queue_stats("q").await.is_ok(), "viewers read");
    let member = connect(&server, password("MEMBER@acme.test"), Some(project_id))
        .await
        .expect("emails are case-blind");
    assert_eq!(
        member.hello().user_id,
        Some(member_user.user_id),
        "a user learns its own id"
    );
    let own = member
        .call(Request::UserGet(taskforge_protocol::UserRef {
            user_id: member_user.user_id,
        }))
        .await;
    assert!(own.is_ok(), "a member reads itself");
    let set = Request::SubscriptionSet(SubscriptionSet {
        org_id,
        plan: Plan::Enterprise,
        status: SubscriptionStatus::Active,
        period_start_ms: 0,
        period_end_ms: u64::MAX,
        limits: None,
    });
    assert_eq!(code(member.call(set).await), ErrorCode::Forbidden);
    assert!(member.call(create_key).await.is_ok(), "members create keys");
    assert!(member
        .call(Request::SubscriptionGet(OrgRef { org_id }))
        .await
        .is_ok());
    let other_org = org(&root, "other").await;
    assert_eq!(
        code(
            member
                .call(Request::OrgGet(OrgRef { org_id: other_org }))
                .await
        ),
        ErrorCode::NotFound
    );
    let elsewhere = connect(&server, password("member@acme.test"), Some(1)).await;
    assert_eq!(
        code(elsewhere),
        ErrorCode::Forbidden,
        "a project of another organization"
    );
    let wrong = Credentials::Password {
        email: "member@acme.test".into(),
        password: "wrong password!!".into(),
    };
    assert_eq!(
        code(connect(&server, wrong, None).await),
        ErrorCode::Unauthenticated
    );
}

#[tokio::test]
async fn api_key_lifecycle_wrong_unknown_revoked_expired_rotated() {
    let server = TestServer::start_with_manual_clock().await;
    let root = server.client().await;
    let org_id = org(&root, "keys").await;
    let project_id = project(&root, org_id, "p").await.project_id;
    let now_ms = root.ping().await.expect("ping").server_time_ms;
    let good = key(&root, project_id, &ALL_SCOPES, None).await;
    let (key_id, secret) = good
        .secret
        .trim_start_matches("tf_")
        .split_once('_')
        .expect("shape");
    let refused = |credential: String| {
        let server = &server;
        async move { code(connect(server, Credentials::ApiKey(credential), None).await) }
    };
    let flipped: String = secret.chars().rev().collect();
    assert_eq!(
        refused(format!("tf_{key_id}_{flipped}")).await,
        ErrorCode::Unauthenticated
    );
    assert_eq!(
        refused(format!("tf_{}_{secret}", "0".repeat(16))).await,
        ErrorCode::Unauthenticated
    );

    let live = with_key(&server, &good).await;
    live.ping().await.expect("live session");
    let revoked = call(
        &root,
        Request::ApiKeyRevoke(ApiKeyRef {
            key_id: key_id.into(),
        }),
    )
    .await;
    assert!(matches!(revoked, Response::ApiKeyRevoke(info) if info.revoked_at_ms.is_some()));
    assert_eq!(
        refused(good.secret.clone()).await,
        ErrorCode::Unauthenticated
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = tokio::time::timeout(Duration::from_secs(1), live.queue_list(None, 10))
        .await
        .expect("answered");
    assert!(
        after.is_err(),
        "the revoked key's live session is closed: {after:?}"
    );

    let expiring = key(&root, project_id, &ALL_SCOPES, Some(now_ms + 1_000)).await;
    with_key(&server, &expiring)
        .await
        .ping()
        .await
        .expect("valid before expiry");
    server.advance(1_000);
    assert_eq!(
        refused(expiring.secret.clone()).await,
        ErrorCode::Unauthenticated
    );

    let rotating = key(&root, project_id, &ALL_SCOPES, None).await;
    let rotated = match call(
        &root,
        Request::ApiKeyRotate(ApiKeyRotate {
            key_id: rotating.key.key_id.clone(),
            grace_ms: Some(5_000),
        }),
    )
    .await
    {
        Response::ApiKeyRotate(secret) => secret,
        other => panic!("unexpected {other:?}"),
    };
    assert_ne!(rotated.secret, rotating.secret);
    with_key(&server, &rotating)
        .await
        .ping()
        .await
        .expect("old secret within grace");
    with_key(&server, &rotated)
        .await
        .ping()
        .await
        .expect("new secret");
    server.advance(5_000);
    assert_eq!(
        refused(rotating.secret.clone()).await,
        ErrorCode::Unauthenticated
    );
    with_key(&server, &rotated)
        .await
        .ping()
        .await
        .expect("new secret after grace");
}

#[tokio::test]
async fn only_hashes_of_secrets_are_stored_and_lists_hide_them() {
    let mut server = TestServer::start().await;
    let root = server.client().await;
    let org_id = org(&root, "vault").await;
    let project_id = project(&root, org_id, "p").await.project_id;
    let secret = key(&root, project_id, &ALL_SCOPES, None).await;
    user(&root, org_id, "someone@vault.test", Role::Owner).await;
    let listed = call(
        &root,
        Request::ApiKeyList(taskforge_protocol::ProjectPage {
            project_id,
            after: None,
            limit: 10,
        }),
    )
    .await;
    assert!(
        !format!("{listed:?}").contains(&secret.secret[20..]),
        "a list never shows a secret"
    );
    server.stop().await;
    // Every byte the store keeps on disk: sled's files and the journal's.
    let mut raw = Vec::new();
    let mut pending = vec![server.config.broker.data_dir.clone()];
    while let Some(path) = pending.pop() {
        for entry in std::fs::read_dir(&path).expect("list") {
            let entry = entry.expect("entry");
            let name = entry.file_name();
            let top_level = path == server.config.broker.data_dir;
            if top_level
                && !taskforge::storage::sled_store::is_store_file_name(&name.to_string_lossy())
            {
                continue;
            }
            if entry.file_type().expect("type").is_dir() {
                pending.push(entry.path());
            } else {
                raw.extend(std::fs::read(entry.path()).expect("read"));
            }
        }
    }
    let contains = |needle: &[u8]| raw.windows(needle.len()).any(|window| window == needle);
    let key_secret = secret.secret.rsplit('_').next().expect("secret part");
    assert!(
        !contains(key_secret.as_bytes()),
        "the key's secret is stored in clear"
    );
    assert!(
        !contains(b"a long enough password"),
        "a password is stored in clear"
    );
    assert!(
        contains(b"$argon2id$"),
        "passwords are stored as Argon2id hashes"
    );
    assert!(
        !contains(crate::support::ROOT_TOKEN.as_bytes()),
        "the root token is stored"
    );
}

#[tokio::test]
async fn failed_handshakes_are_rate_limited_per_address() {
    let server = TestServer::start().await;
    let wrong = || Credentials::RootToken("not-the-root-token".into());
    for _ in 0..taskforge_protocol::limits::HANDSHAKE_FAILURES_MAX {
        assert_eq!(
            code(connect(&server, wrong(), None).await),
            ErrorCode::Unauthenticated
        );
    }
    assert_eq!(
        code(connect(&server, wrong(), None).await),
        ErrorCode::RateLimited
    );
    let right = Credentials::RootToken(crate::support::ROOT_TOKEN.into());
    assert_eq!(
        code(connect(&server, right, None).await),
        ErrorCode::RateLimited,
        "guessing stops for the window, even for a correct guess"
    );
}
