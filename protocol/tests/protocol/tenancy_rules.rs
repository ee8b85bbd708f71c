//! The tenancy vectors obey the rules PROTOCOL.md states for them, and the plan presets
//! table in PROTOCOL.md shows the values the vectors use, so a client author who tests
//! against the vectors learns the right formats.

use taskforge_protocol::limits::*;
use taskforge_protocol::*;

use crate::fixtures::{all_vectors, Message};
use crate::spec_document::protocol_md;
use crate::tenancy_fixtures::{enterprise_limits, free_limits, pro_limits};

fn is_lower_hex(text: &str, digits: usize) -> bool {
    text.len() == digits
        && text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// Checks `tf_<key id>_<secret>` and returns what is wrong, if anything.
fn credential_problem(credential: &str, key_id: Option<&str>) -> Option<String> {
    let Some(rest) = credential.strip_prefix("tf_") else {
        return Some(format!("{credential} does not start with tf_"));
    };
    let Some((id, secret)) = rest.split_once('_') else {
        return Some(format!("{credential} has no second _"));
    };
    if !is_lower_hex(id, API_KEY_ID_HEX_DIGITS) {
        return Some(format!(
            "key id {id} is not {API_KEY_ID_HEX_DIGITS} hex digits"
        ));
    }
    if !is_lower_hex(secret, API_KEY_SECRET_HEX_DIGITS) {
        return Some(format!(
            "secret of {id} is not {API_KEY_SECRET_HEX_DIGITS} hex digits"
        ));
    }
    match key_id {
        Some(expected) if expected != id => Some(format!("{credential} is not key {expected}")),
        _ => None,
    }
}

fn is_slug(slug: &str) -> bool {
    (1..=SLUG_BYTES_MAX).contains(&slug.len())
        && slug
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
}

fn is_name(name: &str) -> bool {
    (1..=NAME_BYTES_MAX).contains(&name.len())
}

fn is_email(email: &str) -> bool {
    (EMAIL_BYTES_MIN..=EMAIL_BYTES_MAX).contains(&email.len()) && email.contains('@')
}

fn is_password(password: &str) -> bool {
    (PASSWORD_BYTES_MIN..=PASSWORD_BYTES_MAX).contains(&password.len())
}

fn scopes_valid(scopes: &[Scope]) -> bool {
    let mut sorted = scopes.to_vec();
    sorted.sort();
    sorted.dedup();
    !scopes.is_empty() && sorted.len() == scopes.len()
}

fn check_key(key: &ApiKeyInfo, problems: &mut Vec<String>) {
    if !is_lower_hex(&key.key_id, API_KEY_ID_HEX_DIGITS) {
        problems.push(format!("key id {} is malformed", key.key_id));
    }
    if !is_name(&key.name) || !scopes_valid(&key.scopes) {
        problems.push(format!("key {} has a bad name or scopes", key.key_id));
    }
}

fn check_user(user: &User, problems: &mut Vec<String>) {
    // Stored emails are lower-case.
    if !is_email(&user.email) || user.email != user.email.to_lowercase() {
        problems.push(format!("user email {} is not a stored email", user.email));
    }
}

fn check_request(request: &Request, problems: &mut Vec<String>) {
    let mut names = Vec::new();
    let mut slugs = Vec::new();
    // (the rule holds, what was checked)
    let mut checks: Vec<(bool, String)> = Vec::new();
    match request {
        Request::Hello(hello) => {
            let credential_ok = match &hello.credentials {
                Credentials::ApiKey(key) => credential_problem(key, None).is_none(),
                Credentials::Password { email, password } => {
                    is_email(email) && is_password(password)
                }
                Credentials::RootToken(_) => true,
            };
            checks.push((credential_ok, format!("HELLO {:?}", hello.credentials)));
        }
        Request::OrgCreate(body) => {
            names.push(&body.name);
            slugs.push(&body.slug);
            checks.push((body.plan != Plan::Custom, "ORG_CREATE plan".to_owned()));
        }
        Request::OrgUpdate(body) => names.extend(body.name.as_ref()),
        Request::UserCreate(body) => checks.push((
            is_email(&body.email) && is_password(&body.password),
            format!("USER_CREATE {}", body.email),
        )),
        Request::UserUpdate(body) => checks.push((
            body.email.as_deref().is_none_or(is_email),
            format!("USER_UPDATE {:?}", body.email),
        )),
        Request::UserSetPassword(body) => checks.push((
            is_password(&body.password),
            "USER_SET_PASSWORD password length".to_owned(),
        )),
        Request::SubscriptionSet(body) => checks.push((
            body.plan != Plan::Custom || body.limits.is_some(),
            "SUBSCRIPTION_SET custom without limits".to_owned(),
        )),
        Request::ProjectCreate(body) => {
            names.push(&body.name);
            slugs.push(&body.slug);
        }
        Request::ProjectUpdate(body) => names.push(&body.name),
        Request::ApiKeyCreate(body) => {
            names.push(&body.name);
            checks.push((
                scopes_valid(&body.scopes),
                format!("APIKEY_CREATE scopes {:?}", body.scopes),
            ));
        }
        Request::ApiKeyRevoke(ApiKeyRef { key_id }) => checks.push((
            is_lower_hex(key_id, API_KEY_ID_HEX_DIGITS),
            format!("key id {key_id}"),
        )),
        Request::ApiKeyRotate(ApiKeyRotate { key_id, grace_ms }) => {
            checks.push((
                is_lower_hex(key_id, API_KEY_ID_HEX_DIGITS),
                format!("key id {key_id}"),
            ));
            checks.push((
                grace_ms.is_none_or(|grace_ms| grace_ms <= API_KEY_ROTATE_GRACE_MS_MAX),
                format!("grace {grace_ms:?}"),
            ));
        }
        Request::ApiKeyList(ProjectPage { after, .. }) => checks.push((
            after
                .as_deref()
                .is_none_or(|after| is_lower_hex(after, API_KEY_ID_HEX_DIGITS)),
            format!("APIKEY_LIST after {after:?}"),
        )),
        _ => {}
    }
    checks.extend(
        names
            .into_iter()
            .map(|name| (is_name(name), format!("name {name:?}"))),
    );
    checks.extend(
        slugs
            .into_iter()
            .map(|slug| (is_slug(slug), format!("slug {slug:?}"))),
    );
    problems.extend(
        checks
            .into_iter()
            .filter(|(holds, _)| !holds)
            .map(|(_, what)| what),
    );
}

fn check_response(response: &Response, problems: &mut Vec<String>) {
    let mut organizations: Vec<&Organization> = Vec::new();
    let mut projects: Vec<&Project> = Vec::new();
    match response {
        Response::OrgCreate(org) | Response::OrgGet(org) | Response::OrgUpdate(org) => {
            organizations.push(org)
        }
        Response::OrgList(list) => organizations.extend(&list.orgs),
        Response::UserCreate(user)
        | Response::UserGet(user)
        | Response::UserUpdate(user)
        | Response::UserDisable(user) => check_user(user, problems),
        Response::UserList(list) => list
            .users
            .iter()
            .for_each(|user| check_user(user, problems)),
        Response::ProjectCreate(project)
        | Response::ProjectGet(project)
        | Response::ProjectUpdate(project) => projects.push(project),
        Response::ProjectList(list) => projects.extend(&list.projects),
        Response::ApiKeyCreate(secret) | Response::ApiKeyRotate(secret) => {
            check_key(&secret.key, problems);
            problems.extend(credential_problem(&secret.secret, Some(&secret.key.key_id)));
        }
        Response::ApiKeyRevoke(key) => {
            check_key(key, problems);
            if key.revoked_at_ms.is_none() {
                problems.push("APIKEY_REVOKE answered a key without revoked_at_ms".to_owned());
            }
        }
        Response::ApiKeyList(list) => list.keys.iter().for_each(|key| check_key(key, problems)),
        _ => {}
    }
    for org in organizations {
        if !is_name(&org.name) || !is_slug(&org.slug) {
            problems.push(format!("organization {}", org.org_id));
        }
    }
    for project in projects {
        if !is_name(&project.name) || !is_slug(&project.slug) {
            problems.push(format!("project {}", project.project_id));
        }
    }
}

#[test]
fn tenancy_vectors_follow_the_formats_and_validation_rules() {
    let mut problems = Vec::new();
    for vector in all_vectors() {
        let mut found = Vec::new();
        match &vector.message {
            Message::Request(request) => check_request(request, &mut found),
            Message::Response(response) => check_response(response, &mut found),
            Message::Error { .. } => {}
        }
        problems.extend(
            found
                .into_iter()
                .map(|problem| format!("{}: {problem}", vector.name)),
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn only_create_and_rotate_answers_carry_a_secret() {
    // A secret is `tf_` + id + `_` + secret; it may appear in a HELLO (the client's own
    // credential) and in APIKEY_CREATE and APIKEY_ROTATE responses, and nowhere else.
    let mut problems = Vec::new();
    for vector in all_vectors() {
        let allowed = matches!(
            &vector.message,
            Message::Request(Request::Hello(_))
                | Message::Response(Response::ApiKeyCreate(_) | Response::ApiKeyRotate(_))
        );
        let body = String::from_utf8_lossy(&vector.body_bytes()).into_owned();
        if !allowed && body.contains("tf_") {
            problems.push(vector.name.clone());
        }
    }
    assert!(
        problems.is_empty(),
        "vectors carrying a key secret: {problems:?}"
    );
}

#[test]
fn plan_presets_in_protocol_md_match_the_vectors() {
    let document = protocol_md();
    let presets = [free_limits(), pro_limits(), enterprise_limits()];
    let rows: Vec<(&str, [u64; 3])> = vec![
        (
            "projects_max",
            presets.clone().map(|l| u64::from(l.projects_max)),
        ),
        (
            "queues_per_project_max",
            presets.clone().map(|l| u64::from(l.queues_per_project_max)),
        ),
        (
            "pending_jobs_max",
            presets.clone().map(|l| l.pending_jobs_max),
        ),
        (
            "payload_bytes_max",
            presets.clone().map(|l| u64::from(l.payload_bytes_max)),
        ),
        (
            "enqueue_rate_per_second",
            presets
                .clone()
                .map(|l| u64::from(l.enqueue_rate_per_second)),
        ),
        (
            "enqueue_burst",
            presets.clone().map(|l| u64::from(l.enqueue_burst)),
        ),
        (
            "connections_max",
            presets.clone().map(|l| u64::from(l.connections_max)),
        ),
        (
            "workers_max",
            presets.clone().map(|l| u64::from(l.workers_max)),
        ),
        ("retention_ms", presets.clone().map(|l| l.retention_ms)),
    ];
    let missing: Vec<String> = rows
        .into_iter()
        .map(|(field, [free, pro, enterprise])| {
            format!("| `{field}` | {free} | {pro} | {enterprise} |")
        })
        .filter(|row| !document.lines().any(|line| line.starts_with(row.as_str())))
        .collect();
    assert!(
        missing.is_empty(),
        "PROTOCOL.md's plan table lacks these rows:\n{}",
        missing.join("\n")
    );
}
