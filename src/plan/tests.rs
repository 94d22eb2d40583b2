//! The planning rules, one test each, on plain deployed state (no AWS).

use std::collections::BTreeMap;
use std::sync::Arc;

use std::collections::BTreeSet;

use super::*;
use crate::change::{Diff, Field};
use crate::resources::alarms::{AlarmSpec, AlarmState};
use crate::resources::alias::{ALIAS, Snapshot, Version, Versions};
use crate::resources::api::{ApiDetail, ApiSummary, choose_api};
use crate::resources::api_key::KeyState;
use crate::resources::apigateway::Throttle;
use crate::resources::function::{Code, FunctionState};
use crate::resources::log_group::LogGroupState;
use crate::resources::permission::permits;
use crate::resources::role::RoleState;
use crate::resources::role::other_regions;
use crate::resources::routes::MethodState;
use crate::resources::stage::{DEFAULT_STAGE, StageState, deployment_description};
use crate::resources::table::{COUNTER_KEY_SCHEMA, Counters, Global, TableState, Ttl, table_name};
use crate::resources::topic::{Subscription, TopicState};
use crate::settings::{Architecture, Front, Options};
use crate::stack::{LEGACY_POLICY_NAME, PERMISSION_SID, TABLE_VARIABLE};

/// The first row of `resource` in the plan.
fn change(plan: &Plan, resource: Resource) -> Change {
    plan.changes().into_iter().find(|change| change.resource == resource).expect("every resource is planned")
}

fn action(plan: &Plan, resource: Resource) -> Action<Vec<Diff>> {
    change(plan, resource).action
}

fn rest(plan: &Plan) -> &RestPlan {
    match &plan.front {
        FrontPlan::Rest(rest) => rest,
        FrontPlan::FunctionUrl(_) => panic!("the REST front is planned"),
    }
}

/// The ids of the APIs the plan deletes.
fn duplicate_apis(plan: &Plan) -> Vec<String> {
    let deletions = match &plan.front {
        FrontPlan::Rest(rest) => &rest.api.duplicates,
        FrontPlan::FunctionUrl(url) => &url.apis,
    };
    deletions.iter().flat_map(|deletion| deletion.targets.iter().map(|api| api.0.clone())).collect()
}

/// The ids of the keys the plan deletes.
fn duplicate_keys(plan: &Plan) -> Vec<String> {
    let ids = |deletions: &[&Deletion<KeyId>]| {
        deletions.iter().flat_map(|deletion| deletion.targets.iter().map(|key| key.0.clone())).collect()
    };
    match &plan.front {
        FrontPlan::Rest(rest) => match &rest.keys {
            Keys::Wanted { key, .. } => ids(&key.duplicates.iter().collect::<Vec<_>>()),
            Keys::Unwanted { keys, .. } => ids(&[keys]),
        },
        FrontPlan::FunctionUrl(url) => ids(&[&url.keys]),
    }
}

/// The usage plans the plan deletes.
fn duplicate_usage_plans(plan: &Plan) -> Vec<UsagePlanState> {
    let all = |deletions: &[&Deletion<UsagePlanState>]| {
        deletions.iter().flat_map(|deletion| deletion.targets.iter().cloned()).collect()
    };
    match &plan.front {
        FrontPlan::Rest(rest) => match &rest.keys {
            Keys::Wanted { usage_plan, .. } => all(&usage_plan.duplicates.iter().collect::<Vec<_>>()),
            Keys::Unwanted { usage_plans, .. } => all(&[usage_plans]),
        },
        FrontPlan::FunctionUrl(url) => all(&[&url.usage_plans]),
    }
}

/// Whether a shown change has a difference in `field`.
fn touches(action: &Action<Vec<Diff>>, field: Field) -> bool {
    action.change().is_some_and(|diffs| diffs.iter().any(|diff| diff.field == field))
}

fn kept_usage_plan(plan: &Plan) -> Option<&UsagePlanState> {
    match &rest(plan).keys {
        Keys::Wanted { usage_plan, .. } => usage_plan.usage_plan.as_ref(),
        Keys::Unwanted { .. } => None,
    }
}

const NAME: &str = "AtomicCounter";
const TABLE: &str = "Counters";
const API: &str = "api1";
const KEY: &str = "key1";
const PLAN: &str = "plan1";
const CODE_SHA: &str = "Y29kZSBvZiB0aGUgdGVzdA==";

fn account() -> Account {
    account_in("us-east-1")
}

fn account_in(region: &str) -> Account {
    Account { id: "123456789012".into(), partition: "aws".into(), region: region.into() }
}

/// The stack `healthy()` is: resolved name, table and stage.
fn stack() -> Stack {
    Stack { name: NAME.into(), table: TABLE.into(), stage: DEFAULT_STAGE.into() }
}

/// The code the tests deploy: the same bytes and hash whatever the instruction set.
fn code(architecture: Architecture) -> Option<Code> {
    Some(Code {
        zip: Arc::new(b"bootstrap".to_vec()),
        sha256: CODE_SHA.into(),
        architecture: match architecture {
            Architecture::X86_64 => aws_sdk_lambda::types::Architecture::X8664,
            Architecture::Arm64 => aws_sdk_lambda::types::Architecture::Arm64,
        },
    })
}

/// No option given.
fn options() -> Options {
    Options {
        front: None,
        auth: None,
        rate_limit: None,
        burst_limit: None,
        architecture: None,
        memory: None,
        timeout: None,
        log_retention_days: None,
        protect_table: false,
        max_concurrency: None,
        alarms: None,
        alarm_email: None,
        alarm_topic: None,
        domain: None,
        certificate_arn: None,
        hosted_zone_id: None,
    }
}

fn request(options: &Options) -> Request<'_> {
    Request {
        name: NAME,
        table: None,
        stage: None,
        switch_table: false,
        recreate_table: false,
        options,
        code: &code,
        regions: None,
        api_key_value: None,
    }
}

fn plan_with(deployed: &Deployed, options: &Options) -> Plan {
    install(&request(options), deployed).expect("the plan is not refused")
}

fn planned(deployed: &Deployed) -> Plan {
    plan_with(deployed, &options())
}

/// The statement install adds: API Gateway may invoke the function from `source_arn`.
fn permission(source_arn: &str) -> serde_json::Value {
    serde_json::json!({
        "Sid": PERMISSION_SID,
        "Effect": "Allow",
        "Principal": {"Service": "apigateway.amazonaws.com"},
        "Action": "lambda:InvokeFunction",
        "Resource": stack().function_arn(&account()),
        "Condition": {"ArnLike": {"AWS:SourceArn": source_arn}},
    })
}

fn table(name: &str) -> TableState {
    TableState {
        name: name.into(),
        arn: format!("arn:aws:dynamodb:us-east-1:123456789012:table/{name}"),
        key_schema: COUNTER_KEY_SCHEMA.into(),
        tagged: true,
        cloudformation: None,
        deletion_protection: true,
        point_in_time_recovery: true,
        ttl: Ttl::OnExpiresAt,
        global: None,
        holds_items: None,
    }
}

fn api(id: &str, tagged: bool, created: i64) -> ApiSummary {
    ApiSummary { id: id.into(), tagged, cloudformation: None, created, run: None }
}

fn key(id: &str, tagged: bool, created: i64) -> KeyState {
    KeyState { id: id.into(), enabled: true, tagged, created, run: None }
}

/// The topic the healthy stack's alarms send to.
const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:ops";

/// The alarms of a healthy stack on `front` whose function times out after `timeout`
/// seconds, all `OK`.
fn alarms_for(stack: &Stack, front: Front, timeout: i32) -> Vec<AlarmState> {
    let alarm = |spec| AlarmState { spec, state: "OK".into(), reason: String::new(), tagged: true };
    alarms::wanted(stack, front, timeout, Some(TOPIC)).into_iter().map(alarm).collect()
}

/// A fully installed, healthy stack with auth api-key, in us-east-1.
fn healthy() -> Deployed {
    let account = account();
    let stack = stack();
    let role_arn = role::arn(NAME, &account);
    let uri = stack.integration_uri(&account);
    assert!(permits(&permission(&stack.source_arn(&account, API)), &stack.source_arn(&account, API)));
    Deployed {
        function_url: None,
        function: Some(FunctionState {
            arn: stack.function_arn(&account),
            code_sha256: CODE_SHA.into(),
            architecture: "x86_64".into(),
            memory_mb: 128,
            timeout_seconds: 15,
            role: role_arn.clone(),
            runtime: "provided.al2023".into(),
            handler: "bootstrap".into(),
            variables: BTreeMap::from([(TABLE_VARIABLE.to_owned(), TABLE.to_owned())]),
            tagged: true,
            cloudformation: None,
            ready: true,
            reserved_concurrency: None,
            permission: Some(permission(&stack.source_arn(&account, API))),
            legacy_permission: false,
            versions: Versions {
                alias: Some(1),
                revision: None,
                weighted: false,
                published: vec![Version {
                    number: 1,
                    snapshot: Snapshot {
                        code_sha256: CODE_SHA.into(),
                        architecture: "x86_64".into(),
                        memory_mb: 128,
                        timeout_seconds: 15,
                        role: role_arn.clone(),
                        table: TABLE.into(),
                    },
                    published_by: None,
                }],
            },
            public_statements: 0,
            own_public: false,
        }),
        table: Some(table(TABLE)),
        counters: None,
        kept_tables: Vec::new(),
        role: Some(RoleState {
            arn: role_arn,
            tagged: true,
            cloudformation: None,
            trust_ok: true,
            inline: BTreeMap::from([("counterctl-us-east-1".to_owned(), Some(stack.role_policy(&account)))]),
            managed: Vec::new(),
            instance_profiles: Vec::new(),
        }),
        log_group: Some(LogGroupState { retention_days: Some(30), tagged: true, cloudformation: None }),
        apis: vec![api(API, true, 1_000)],
        api: Some(ApiDetail {
            root_id: "root".into(),
            proxy_id: Some("proxy".into()),
            method: Some(MethodState {
                authorization: "NONE".into(),
                key_required: true,
                integration_uri: Some(uri.clone()),
            }),
            stages: vec![StageState {
                name: "prod".into(),
                deployment: Some(deployment_description("NONE", true, &uri)),
                deployment_id: Some("dep1".into()),
                throttle: None,
            }],
        }),
        keys: vec![key(KEY, true, 1_000)],
        usage_plans: vec![UsagePlanState {
            id: PLAN.into(),
            tagged: true,
            stages: vec![(API.into(), "prod".into())],
            throttle: Some(Throttle { rate: 50.0, burst: 100 }),
            key_ids: vec![KEY.into()],
            run: None,
        }],
        account,
        alarms: alarms_for(&stack, Front::Rest, 15),
        topic: None,
        domains: Vec::new(),
        certificate: None,
        zone_record: None,
    }
}

/// The fields an action's diffs touch (none for an action without diffs).
fn fields(action: &Action<Vec<Diff>>) -> Vec<Field> {
    match action {
        Action::Update(diffs) | Action::Adopt(diffs) => diffs.iter().map(|diff| diff.field).collect(),
        _ => Vec::new(),
    }
}

/// The change of `resource` named `name`.
fn named<'a>(changes: &'a [Change], resource: Resource, name: &str) -> &'a Change {
    changes
        .iter()
        .find(|change| change.resource == resource && change.name == name)
        .unwrap_or_else(|| panic!("no {resource:?} change named {name}: {changes:#?}"))
}

/// The resources a plan writes.
fn changing(plan: &Plan) -> Vec<(Resource, String)> {
    plan.changes().iter().filter(|change| change.action.changes()).map(|c| (c.resource, c.name.clone())).collect()
}

fn function_mut(deployed: &mut Deployed) -> &mut FunctionState {
    deployed.function.as_mut().expect("healthy has a function")
}

fn method_mut(deployed: &mut Deployed) -> &mut MethodState {
    deployed.api.as_mut().and_then(|api| api.method.as_mut()).expect("healthy has a method")
}

fn stage_mut(deployed: &mut Deployed) -> &mut StageState {
    deployed.api.as_mut().and_then(|api| api.stages.first_mut()).expect("healthy has a stage")
}

fn with_table<'a>(options: &'a Options, table: &'a str, switch_table: bool) -> Request<'a> {
    Request { table: Some(table), switch_table, ..request(options) }
}

// 1.

#[test]
fn a_healthy_stack_with_no_options_plans_no_change() {
    let plan = planned(&healthy());
    assert!(plan.up_to_date(), "changes: {:#?}", changing(&plan));
    for change in &plan.changes() {
        // The other front's resource is absent, as it should be.
        let expected = if change.resource == Resource::FunctionUrl { Action::Absent } else { Action::Keep };
        assert_eq!(change.action, expected, "{change:?}");
    }
    let resources: BTreeSet<Resource> = plan.changes().iter().map(|change| change.resource).collect();
    assert_eq!(resources.len(), 15, "every resource is planned: {resources:?}");
    assert!(plan.advisories.is_empty(), "{:?}", plan.advisories);
    assert!(
        duplicate_apis(&plan).is_empty() && duplicate_keys(&plan).is_empty() && duplicate_usage_plans(&plan).is_empty()
    );
    assert_eq!(plan.api_id(), Some(API));
    assert_eq!(plan.key().map(|key| key.id.as_str()), Some(KEY));
    assert_eq!(kept_usage_plan(&plan).map(|plan| plan.id.as_str()), Some(PLAN));
}

// 2.

#[test]
fn an_instruction_set_without_code_built_from_the_sources_is_refused_asked_for_or_deployed() {
    let x86_only = |architecture| match architecture {
        Architecture::X86_64 => code(architecture),
        Architecture::Arm64 => None,
    };
    let arm64 = Options { architecture: Some(Architecture::Arm64), ..options() };
    let asked = Request { code: &x86_only, ..request(&arm64) };
    let refusal = install(&asked, &healthy()).expect_err("no arm64 code to deploy");
    assert!(matches!(refusal, Refusal::NoBundledCode { architecture: "arm64" }), "{refusal}");
    assert!(refusal.to_string().contains("--function-zip"), "{refusal}");

    let mut deployed = healthy();
    function_mut(&mut deployed).architecture = "arm64".into();
    let none_given = options();
    let kept = Request { code: &x86_only, ..request(&none_given) };
    let refusal = install(&kept, &deployed).expect_err("the deployed arm64 function has no code here");
    assert!(matches!(refusal, Refusal::NoBundledCode { architecture: "arm64" }), "{refusal}");
    let x86 = Options { architecture: Some(Architecture::X86_64), ..options() };
    assert!(install(&Request { code: &x86_only, ..request(&x86) }, &deployed).is_ok(), "moving to x86_64 is not");
}

#[test]
fn options_not_given_keep_what_is_deployed() {
    let mut deployed = healthy();
    let uri = stack().integration_uri(&account());
    {
        let function = function_mut(&mut deployed);
        function.memory_mb = 512;
        function.timeout_seconds = 60;
        function.architecture = "arm64".into();
        function.versions.published[0].snapshot = Snapshot::of(function);
    }
    method_mut(&mut deployed).key_required = false;
    stage_mut(&mut deployed).deployment = Some(deployment_description("NONE", false, &uri));
    deployed.keys.clear();
    deployed.usage_plans.clear();
    deployed.log_group = Some(LogGroupState { retention_days: Some(90), tagged: true, cloudformation: None });
    deployed.alarms = alarms_for(&stack(), Front::Rest, 60);

    let plan = planned(&deployed);
    assert!(plan.up_to_date(), "changes: {:#?}", changing(&plan));
    assert_eq!(plan.wanted.auth, Auth::None);
    assert_eq!(plan.wanted.function.code.architecture, aws_sdk_lambda::types::Architecture::Arm64);
    assert_eq!(plan.wanted.function.memory_mb, 512);
    assert_eq!(plan.wanted.function.timeout_seconds, 60);
    assert_eq!(plan.wanted.log_retention_days, Some(90));
    assert_eq!(action(&plan, Resource::ApiKey), Action::Absent);
    assert_eq!(action(&plan, Resource::UsagePlan), Action::Absent);
}

#[test]
fn options_not_given_keep_the_deployed_throttle_and_stage() {
    let mut deployed = healthy();
    deployed.usage_plans[0].throttle = Some(Throttle { rate: 10.0, burst: 20 });
    let plan = planned(&deployed);
    assert!(plan.up_to_date(), "changes: {:#?}", changing(&plan));
    assert_eq!(plan.wanted.throttle, Throttle { rate: 10.0, burst: 20 });

    let mut deployed = healthy();
    stage_mut(&mut deployed).name = "live".into();
    deployed.usage_plans[0].stages = vec![(API.into(), "live".into())];
    deployed.alarms = alarms_for(&Stack { stage: "live".into(), ..stack() }, Front::Rest, 15);
    let plan = planned(&deployed);
    assert_eq!(plan.stack.stage, "live");
    assert!(plan.up_to_date(), "changes: {:#?}", changing(&plan));
}

// 3.

#[test]
fn an_option_given_changes_only_its_field() {
    let options = Options { memory: Some(256), ..options() };
    let plan = plan_with(&healthy(), &options);
    assert_eq!(
        action(&plan, Resource::Function),
        Action::Update(vec![Diff { field: Field::Memory, from: "128 MB".into(), to: "256 MB".into() }])
    );
    // A version with the new configuration, and the alias moved to it.
    assert_eq!(
        action(&plan, Resource::Alias),
        Action::Update(vec![Diff {
            field: Field::Version,
            from: "version 1".into(),
            to: "a new version (the function changes)".into()
        }])
    );
    assert_eq!(changing(&plan), vec![(Resource::Function, NAME.to_owned()), (Resource::Alias, ALIAS.to_owned())]);
    assert_eq!(plan.wanted.function.memory_mb, 256);
    assert_eq!(plan.wanted.function.timeout_seconds, 15);
}

// 4.

#[test]
fn another_table_without_switch_table_is_refused() {
    let options = options();
    let refusal = install(&with_table(&options, "Other", false), &healthy()).unwrap_err();
    assert_eq!(refusal, Refusal::TableSwitch { current: TABLE.into(), asked: "Other".into() });

    // --switch-table without the counters read is refused too.
    let refusal = install(&with_table(&options, "Other", true), &healthy()).unwrap_err();
    assert_eq!(refusal, Refusal::TableSwitch { current: TABLE.into(), asked: "Other".into() });
}

#[test]
fn switching_to_a_table_whose_counters_are_behind_is_refused() {
    let options = options();
    let mut deployed = healthy();
    deployed.table = Some(table("Other"));
    deployed.counters = Some(Counters {
        current: BTreeMap::from([("a".into(), 5), ("b".into(), 3), ("c".into(), 10)]),
        new: BTreeMap::from([("a".into(), 5), ("b".into(), 2), ("z".into(), 1)]),
    });
    let refusal = install(&with_table(&options, "Other", true), &deployed).unwrap_err();
    let Refusal::CountersBehind { current, asked, count, examples } = refusal else {
        panic!("not CountersBehind: {refusal:?}");
    };
    assert_eq!((current.as_str(), asked.as_str(), count), (TABLE, "Other", 2));
    assert!(examples.contains("b (3 → 2)"), "a lower value is named: {examples}");
    assert!(examples.contains("c (10 → 0)"), "a missing counter is named: {examples}");
    assert!(!examples.contains("a ("), "a counter level with the current one is not named: {examples}");

    // At most 5 are named; the count is all of them.
    let current: BTreeMap<String, i64> = (0..7).map(|i| (format!("counter{i}"), 10)).collect();
    deployed.counters = Some(Counters { current, new: BTreeMap::new() });
    let refusal = install(&with_table(&options, "Other", true), &deployed).unwrap_err();
    let Refusal::CountersBehind { count, examples, .. } = refusal else {
        panic!("not CountersBehind: {refusal:?}");
    };
    assert_eq!(count, 7);
    assert_eq!(examples.split(", ").count(), 5, "{examples}");
}

#[test]
fn switching_to_a_table_whose_counters_are_all_level_or_ahead_is_planned() {
    let options = options();
    let mut deployed = healthy();
    deployed.table = Some(table("Other"));
    deployed.counters = Some(Counters {
        current: BTreeMap::from([("a".into(), 5), ("b".into(), 3)]),
        new: BTreeMap::from([("a".into(), 5), ("b".into(), 4), ("c".into(), 1)]),
    });
    let plan = install(&with_table(&options, "Other", true), &deployed).expect("every counter is level or ahead");
    assert_eq!(plan.stack.table, "Other");
    let Action::Update(diffs) = action(&plan, Resource::Function) else {
        panic!("the function is not updated: {:?}", action(&plan, Resource::Function));
    };
    assert_eq!(diffs, vec![Diff { field: Field::TableName, from: TABLE.into(), to: "Other".into() }]);
    assert!(touches(&action(&plan, Resource::Policy), Field::Document), "the policy grants the new table");
}

#[test]
fn no_table_option_keeps_the_functions_table() {
    let plan = planned(&healthy());
    assert_eq!(plan.stack.table, TABLE);
    assert_ne!(plan.stack.table, counter_function::dynamo::DEFAULT_TABLE);
    assert_eq!(change(&plan, Resource::Table).name, TABLE);
    assert!(!touches(&action(&plan, Resource::Function), Field::TableName));

    let mut deployed = healthy();
    function_mut(&mut deployed).variables.insert(TABLE_VARIABLE.into(), "X".into());
    assert_eq!(table_name(None, deployed.function.as_ref().map(FunctionState::table)), "X");
    assert_eq!(table_name(Some("Asked"), deployed.function.as_ref().map(FunctionState::table)), "Asked");
    assert_eq!(table_name(None, None), "AtomicCounters");
}

#[test]
fn a_table_with_another_key_schema_is_refused() {
    let mut deployed = healthy();
    deployed.table.as_mut().expect("healthy has a table").key_schema = "pk HASH (N)".into();
    let refusal = install(&request(&options()), &deployed).unwrap_err();
    assert_eq!(refusal, Refusal::TableKeySchema { table: TABLE.into(), found: "pk HASH (N)".into() });
}

// 5.

#[test]
fn an_adopted_table_gets_ttl_and_only_advice_about_protection() {
    let mut deployed = healthy();
    let table = deployed.table.as_mut().expect("healthy has a table");
    table.tagged = false;
    table.ttl = Ttl::Off;
    let plan = planned(&deployed);
    assert!(matches!(action(&plan, Resource::Table), Action::Adopt(_)), "{:?}", action(&plan, Resource::Table));
    assert_eq!(fields(&action(&plan, Resource::Table)), vec![Field::Ttl]);
    assert!(plan.advisories.is_empty(), "{:?}", plan.advisories);

    let mut deployed = healthy();
    let table = deployed.table.as_mut().expect("healthy has a table");
    table.tagged = false;
    table.deletion_protection = false;
    table.point_in_time_recovery = false;
    let plan = planned(&deployed);
    assert_eq!(action(&plan, Resource::Table), Action::Adopt(Vec::new()));
    assert!(!action(&plan, Resource::Table).changes());
    assert_eq!(plan.advisories.len(), 2, "{:?}", plan.advisories);
    assert!(plan.advisories.iter().any(|advice| advice.contains("deletion protection")), "{:?}", plan.advisories);
    assert!(plan.advisories.iter().any(|advice| advice.contains("point-in-time recovery")), "{:?}", plan.advisories);

    let options = Options { protect_table: true, ..options() };
    let plan = plan_with(&deployed, &options);
    assert_eq!(fields(&action(&plan, Resource::Table)), vec![Field::DeletionProtection, Field::PointInTimeRecovery]);
    assert!(plan.advisories.is_empty(), "{:?}", plan.advisories);
}

#[test]
fn a_tagged_table_always_gets_its_protections_back() {
    let mut deployed = healthy();
    let table = deployed.table.as_mut().expect("healthy has a table");
    table.deletion_protection = false;
    table.point_in_time_recovery = false;
    let plan = planned(&deployed);
    assert!(matches!(action(&plan, Resource::Table), Action::Update(_)), "{:?}", action(&plan, Resource::Table));
    assert_eq!(fields(&action(&plan, Resource::Table)), vec![Field::DeletionProtection, Field::PointInTimeRecovery]);
}

fn three_regions() -> crate::regions::Regions {
    let regions = ["us-east-1", "us-east-2", "us-west-2"].map(str::to_owned);
    crate::regions::Regions::parse(&regions, None).unwrap()
}

fn global(replicas: &[&str], strong: bool) -> Global {
    Global { replicas: replicas.iter().map(|region| (*region).to_owned()).collect(), witness: None, strong }
}

#[test]
fn an_empty_table_is_made_global_with_ttl_off_and_one_with_items_is_refused() {
    let regions = three_regions();
    let mut deployed = healthy();
    deployed.table.as_mut().expect("healthy has a table").holds_items = Some(false);
    let plan = install(&Request { regions: Some(&regions), ..request(&options()) }, &deployed).unwrap();
    assert_eq!(fields(&action(&plan, Resource::Table)), vec![Field::Ttl, Field::Replicas], "TTL off, then global");
    assert_eq!(plan.regions, Some(regions.clone()));

    deployed.table.as_mut().expect("healthy has a table").holds_items = Some(true);
    let refusal = install(&Request { regions: Some(&regions), ..request(&options()) }, &deployed).unwrap_err();
    assert!(matches!(refusal, Refusal::TableNotEmpty { .. }), "{refusal:?}");
    assert!(refusal.to_string().contains("counters import"), "{refusal}");
}

#[test]
fn a_deployed_strong_table_keeps_its_regions_and_needs_no_ttl() {
    let mut deployed = healthy();
    let table = deployed.table.as_mut().expect("healthy has a table");
    table.global = Some(global(&["us-east-1", "us-west-2", "us-east-2"], true));
    table.ttl = Ttl::Off;
    let plan = planned(&deployed);
    assert!(!action(&plan, Resource::Table).changes(), "{:?}", action(&plan, Resource::Table));
    assert_eq!(plan.regions.as_ref().map(|regions| regions.home.as_str()), Some("us-east-1"), "read from here");

    let witnessed = ["us-east-1", "us-east-2"].map(str::to_owned);
    let other = crate::regions::Regions::parse(&witnessed, Some("us-west-2")).unwrap();
    let refusal = install(&Request { regions: Some(&other), ..request(&options()) }, &deployed).unwrap_err();
    assert!(matches!(refusal, Refusal::RegionsFixed { .. }), "{refusal:?}");
}

#[test]
fn an_untagged_strong_global_table_is_adopted_like_any_table_not_made_by_counterctl() {
    let mut deployed = healthy();
    let table = deployed.table.as_mut().expect("healthy has a table");
    table.global = Some(global(&["us-east-1", "us-east-2", "us-west-2"], true));
    (table.tagged, table.deletion_protection, table.point_in_time_recovery, table.ttl) =
        (false, false, false, Ttl::Off);
    let plan = planned(&deployed);
    assert_eq!(action(&plan, Resource::Table), Action::Adopt(Vec::new()), "not tagged, not protected unasked");
    assert_eq!(plan.advisories.len(), 2, "{:?}", plan.advisories);
}

#[test]
fn in_a_replica_region_a_table_that_is_not_the_replica_is_refused() {
    let regions = three_regions();
    let mut deployed = healthy();
    deployed.account = account_in("us-east-2");
    let refusal = install(&Request { regions: Some(&regions), ..request(&options()) }, &deployed).unwrap_err();
    assert!(matches!(refusal, Refusal::NotAReplica { .. }), "{refusal:?}");
}

#[test]
fn an_eventually_consistent_global_table_is_refused_since_two_regions_could_hand_out_one_value() {
    let mut deployed = healthy();
    deployed.table.as_mut().expect("healthy has a table").global = Some(global(&["us-east-1", "eu-west-1"], false));
    let refusal = install(&request(&options()), &deployed).unwrap_err();
    assert!(matches!(refusal, Refusal::EventualGlobalTable { .. }), "{refusal:?}");
}

#[test]
fn in_a_replica_region_a_table_not_made_yet_is_left_to_the_home_region() {
    let regions = three_regions();
    let mut deployed = healthy();
    // The home region's install made the role; nothing is in us-east-2 yet.
    (deployed.function, deployed.table) = (None, None);
    deployed.account = account_in("us-east-2");
    let plan = install(&Request { regions: Some(&regions), ..request(&options()) }, &deployed).unwrap();
    assert!(matches!(action(&plan, Resource::Table), Action::Retain(_)), "{:?}", action(&plan, Resource::Table));
}

// 6.

#[test]
fn an_auth_change_is_marked_breaking() {
    let auth_none = Options { auth: Some(Auth::None), ..options() };
    let plan = plan_with(&healthy(), &auth_none);
    let route = change(&plan, Resource::Route);
    assert!(touches(&route.action, Field::Method), "{route:?}");
    assert!(route.breaking, "{route:?}");
    let key = change(&plan, Resource::ApiKey);
    assert!(matches!(key.action, Action::Delete(_)) && key.breaking, "{key:?}");
    let usage_plan = change(&plan, Resource::UsagePlan);
    assert!(matches!(usage_plan.action, Action::Delete(_)) && usage_plan.breaking, "{usage_plan:?}");
    assert_eq!(duplicate_keys(&plan), vec![KEY.to_owned()]);
    assert_eq!(duplicate_usage_plans(&plan).iter().map(|plan| plan.id.as_str()).collect::<Vec<_>>(), vec![PLAN]);
    let breaking: Vec<Resource> = plan.breaking().iter().map(|change| change.resource).collect();
    assert_eq!(breaking, vec![Resource::Route, Resource::ApiKey, Resource::UsagePlan]);
    assert!(touches(&action(&plan, Resource::Stage), Field::Deployment), "the new auth is deployed");

    assert!(plan_with(&healthy(), &options()).breaking().is_empty());
}

#[test]
fn requiring_a_key_where_none_was_is_breaking_too() {
    let mut deployed = healthy();
    method_mut(&mut deployed).key_required = false;
    let uri = stack().integration_uri(&account());
    stage_mut(&mut deployed).deployment = Some(deployment_description("NONE", false, &uri));
    deployed.keys.clear();
    deployed.usage_plans.clear();
    let options = Options { auth: Some(Auth::ApiKey), ..options() };
    let plan = plan_with(&deployed, &options);
    assert!(change(&plan, Resource::Route).breaking);
    assert!(!plan.breaking().is_empty());
}

// Versions and the alias.

#[test]
fn a_stack_from_before_the_alias_moves_its_front_to_the_alias_in_one_plan() {
    // As an earlier counterctl left it: the integration and the permission on the function.
    let mut deployed = healthy();
    let account = account();
    let old_uri = format!(
        "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{}/invocations",
        stack().function_arn(&account)
    );
    method_mut(&mut deployed).integration_uri = Some(old_uri.clone());
    stage_mut(&mut deployed).deployment = Some(deployment_description("NONE", true, &old_uri));
    {
        let function = function_mut(&mut deployed);
        function.permission = None;
        function.legacy_permission = true;
        function.versions = Versions::default();
    }
    let plan = planned(&deployed);
    assert_eq!(action(&plan, Resource::Alias), Action::Create);
    let Action::Update(permission) = action(&plan, Resource::Permission) else {
        panic!("{:?}", action(&plan, Resource::Permission))
    };
    assert_eq!(
        permission.len(),
        2,
        "the statement on the alias added, the one on the function removed: {permission:?}"
    );
    assert!(permission[0].to.contains(&format!("{NAME}:live")), "{permission:?}");
    assert!(permission[1].from.contains(NAME) && permission[1].to.contains("removed"), "{permission:?}");
    let Action::Update(integration) = action(&plan, Resource::Integration) else { panic!("the integration moves") };
    assert_eq!(integration[0].to, stack().integration_uri(&account));
    assert!(integration[0].to.contains(":live/invocations"));
    assert!(matches!(action(&plan, Resource::Stage), Action::Update(_)), "redeployed for the new integration");
    assert!(plan.breaking().is_empty(), "callers are answered throughout: {:?}", plan.breaking());
    let FrontPlan::Rest(rest) = &plan.front else { panic!("REST") };
    assert!(crate::resources::permission::removes_legacy(&rest.permission));
}

#[test]
fn an_interrupted_move_to_the_alias_only_removes_the_statement_left_on_the_function() {
    let mut deployed = healthy();
    function_mut(&mut deployed).legacy_permission = true;
    let plan = planned(&deployed);
    assert_eq!(fields(&action(&plan, Resource::Permission)), vec![Field::Statement]);
    assert_eq!(changing(&plan), vec![(Resource::Permission, PERMISSION_SID.to_owned())]);
}

#[test]
fn the_alias_is_brought_forward_when_it_runs_an_older_version_than_the_function() {
    // After a rollback: the alias at version 1, the function's code in version 2.
    let mut deployed = healthy();
    {
        let function = function_mut(&mut deployed);
        let mut newer = function.versions.published[0].clone();
        function.versions.published[0].snapshot.code_sha256 = "older".into();
        newer.number = 2;
        function.versions.published.push(newer);
    }
    let plan = planned(&deployed);
    assert_eq!(
        action(&plan, Resource::Alias),
        Action::Update(vec![Diff {
            field: Field::Version,
            from: "version 1".into(),
            to: "version 2 (what the function runs now)".into()
        }])
    );
    assert_eq!(plan.function.alias.target, crate::resources::alias::Target::Published(2));
    assert_eq!(changing(&plan), vec![(Resource::Alias, ALIAS.to_owned())], "nothing else changes");
}

#[test]
fn a_change_past_the_bound_deletes_the_oldest_versions() {
    let mut deployed = healthy();
    {
        let function = function_mut(&mut deployed);
        let first = function.versions.published[0].clone();
        function.versions.published = (1..=5).map(|number| Version { number, ..first.clone() }).collect();
        function.versions.alias = Some(5);
    }
    let plan = plan_with(&deployed, &Options { memory: Some(256), ..options() });
    let Action::Update(diffs) = action(&plan, Resource::Alias) else { panic!("the alias moves") };
    assert_eq!(diffs[1], Diff { field: Field::Versions, from: "1".into(), to: "deleted".into() });
}

// 7.

#[test]
fn a_change_never_deployed_is_deployed_and_named_by_what_changes_for_callers() {
    let wanted = format!("auth NONE, API key required, function {NAME}:live");
    let cases = [
        ("counterctl install".to_owned(), ("counterctl install".to_owned(), wanted.clone())),
        (
            deployment_description("NONE", false, "arn:aws:other"),
            ("no API key, function arn:aws:other".to_owned(), format!("API key required, function {NAME}:live")),
        ),
    ];
    for (description, (from, to)) in cases {
        let mut deployed = healthy();
        stage_mut(&mut deployed).deployment = Some(description.clone());
        let plan = planned(&deployed);
        let expected = Diff { field: Field::Deployment, from, to };
        assert_eq!(action(&plan, Resource::Stage), Action::Update(vec![expected]));
        assert_eq!(change(&plan, Resource::Stage).name, "prod", "the stage of the counterctl deployment is kept");
        assert_eq!(action(&plan, Resource::Route), Action::Keep);
        assert_eq!(action(&plan, Resource::Integration), Action::Keep);
        assert_eq!(changing(&plan), vec![(Resource::Stage, "prod".to_owned())]);
    }
}

// 8.

#[test]
fn of_two_tagged_apis_the_one_in_use_is_kept_and_the_other_deleted() {
    let mut deployed = healthy();
    // The usage plan serves API (the newer one).
    deployed.apis = vec![api(API, true, 2_000), api("api0", true, 1_000)];
    let plan = planned(&deployed);
    assert_eq!(plan.api_id(), Some(API));
    assert_eq!(duplicate_apis(&plan), vec!["api0".to_owned()]);
    assert_eq!(change(&plan, Resource::Api).name, NAME);
    assert_eq!(action(&plan, Resource::Api), Action::Keep);
    assert!(matches!(named(&plan.changes(), Resource::Api, "api0").action, Action::Delete(_)));
    assert!(!plan.changes().iter().any(|change| change.resource == Resource::Api && change.name == API));

    // No usage plan: the oldest is kept.
    deployed.usage_plans.clear();
    let plan = planned(&deployed);
    assert_eq!(plan.api_id(), Some("api0"));
    assert_eq!(duplicate_apis(&plan), vec![API.to_owned()]);
    assert!(matches!(named(&plan.changes(), Resource::Api, API).action, Action::Delete(_)));
}

#[test]
fn the_api_chosen_is_in_use_else_the_oldest_by_creation_then_id() {
    let serving = |id: &str| UsagePlanState {
        id: "p".into(),
        tagged: true,
        stages: vec![(id.into(), "prod".into())],
        throttle: None,
        key_ids: Vec::new(),
        run: None,
    };
    let chosen = |apis: &[ApiSummary], plans: &[UsagePlanState]| choose_api(apis, plans).map(|api| api.id.clone());
    let apis = [api("new", true, 300), api("b", true, 100), api("a", true, 100)];
    assert_eq!(chosen(&apis, &[serving("new")]), Some("new".into()));
    assert_eq!(chosen(&apis, &[]), Some("a".into()), "same creation time: the smaller id");
    let untagged_plan = UsagePlanState { tagged: false, ..serving("new") };
    assert_eq!(chosen(&apis, &[untagged_plan]), Some("a".into()), "only the stack's usage plans count");
    let apis = [api("old", false, 1), api("new", true, 300)];
    assert_eq!(chosen(&apis, &[]), Some("new".into()), "a tagged API wins over an older untagged one");
    let apis = [api("b", false, 5), api("a", false, 9)];
    assert_eq!(chosen(&apis, &[]), Some("b".into()), "else the oldest untagged one");
    assert_eq!(chosen(&[], &[]), None);
}

// Issue 24, item 8: a run knows what it created itself.

/// An API of the stack made by run `run`.
fn api_of(id: &str, created: i64, run: &str) -> ApiSummary {
    ApiSummary { run: Some(run.into()), ..api(id, true, created) }
}

#[test]
fn a_run_that_made_two_apis_keeps_the_older_and_deletes_the_other_at_once() {
    // Its CreateRestApi's answer was lost and retried: `orphan` first, then `created`.
    let (orphan, created) = (api_of("orphan", 100, "me"), api_of("created", 101, "me"));
    let settled = api::settle(&[orphan.clone(), created.clone()], &created, "me");
    assert_eq!(settled, api::Settled { winner: "orphan".into(), won: true, own_extras: vec!["created".into()] });
    // Made in the same second, the id decides, as every run decides.
    let (orphan, created) = (api_of("b", 100, "me"), api_of("a", 100, "me"));
    let settled = api::settle(&[orphan, created.clone()], &created, "me");
    assert_eq!(settled, api::Settled { winner: "a".into(), won: true, own_extras: vec!["b".into()] });
}

#[test]
fn a_concurrent_installs_older_api_still_wins_and_this_run_deletes_all_of_its_own() {
    let theirs = api_of("theirs", 99, "them");
    let (orphan, created) = (api_of("orphan", 100, "me"), api_of("created", 101, "me"));
    let settled = api::settle(&[theirs.clone(), orphan.clone(), created.clone()], &created, "me");
    assert_eq!(
        settled,
        api::Settled { winner: "theirs".into(), won: false, own_extras: vec!["created".into(), "orphan".into()] }
    );
    // This run's older: it wins, and the other install's API is not this run's to delete.
    let theirs = api_of("theirs", 102, "them");
    let settled = api::settle(&[theirs, orphan, created.clone()], &created, "me");
    assert_eq!(settled, api::Settled { winner: "orphan".into(), won: true, own_extras: vec!["created".into()] });
    // Not listed yet, the API just made still counts.
    let settled = api::settle(&[], &created, "me");
    assert_eq!(settled, api::Settled { winner: "created".into(), won: true, own_extras: Vec::new() });
}

#[test]
fn a_key_or_usage_plan_made_twice_by_this_run_goes_and_no_other_runs() {
    let keys = [
        KeyState { run: Some("me".into()), ..key("orphan", true, 100) },
        KeyState { run: Some("me".into()), ..key("made", true, 101) },
        KeyState { run: Some("them".into()), ..key("theirs", true, 99) },
        key("old", true, 1),
    ];
    let extras = crate::stack::made_again(&keys, ("me", "made"), |key| key.run.as_deref(), |key| &key.id);
    assert_eq!(extras.iter().map(|key| key.id.as_str()).collect::<Vec<_>>(), ["orphan"]);
    let plans = healthy().usage_plans;
    assert!(crate::stack::made_again(&plans, ("me", PLAN), |plan| plan.run.as_deref(), |plan| &plan.id).is_empty());
}

#[test]
fn the_run_tag_is_not_drift() {
    let mut deployed = healthy();
    deployed.apis[0].run = Some("an earlier run".into());
    deployed.keys[0].run = Some("an earlier run".into());
    deployed.usage_plans[0].run = Some("an earlier run".into());
    let plan = planned(&deployed);
    assert!(plan.up_to_date(), "changes: {:#?}", changing(&plan));
}

#[test]
fn of_two_tagged_keys_the_one_in_the_plan_is_kept_else_the_oldest() {
    let mut deployed = healthy();
    // The usage plan holds KEY (the newer one).
    deployed.keys = vec![key(KEY, true, 2_000), key("key0", true, 1_000)];
    let plan = planned(&deployed);
    assert_eq!(plan.key().map(|key| key.id.as_str()), Some(KEY));
    assert_eq!(duplicate_keys(&plan), vec!["key0".to_owned()]);
    assert_eq!(action(&plan, Resource::ApiKey), Action::Keep);
    assert!(matches!(named(&plan.changes(), Resource::ApiKey, "key0").action, Action::Delete(_)));
    assert!(!named(&plan.changes(), Resource::ApiKey, "key0").breaking);

    deployed.usage_plans[0].key_ids.clear();
    let plan = planned(&deployed);
    assert_eq!(plan.key().map(|key| key.id.as_str()), Some("key0"));
    assert_eq!(duplicate_keys(&plan), vec![KEY.to_owned()]);
    assert!(matches!(named(&plan.changes(), Resource::ApiKey, KEY).action, Action::Delete(_)));
    assert!(touches(&action(&plan, Resource::UsagePlan), Field::Key), "the kept key goes into the usage plan");
}

// 9.

#[test]
fn an_untagged_api_named_after_the_stack_is_adopted() {
    let mut deployed = healthy();
    deployed.apis = vec![api(API, false, 1_000)];
    let plan = planned(&deployed);
    assert_eq!(plan.api_id(), Some(API));
    assert!(matches!(action(&plan, Resource::Api), Action::Adopt(_)), "{:?}", action(&plan, Resource::Api));
    assert_eq!(fields(&action(&plan, Resource::Api)), vec![Field::Tags]);
    assert!(duplicate_apis(&plan).is_empty());
    assert_eq!(action(&plan, Resource::Route), Action::Keep, "its routes are used as they are");
}

#[test]
fn an_untagged_role_is_adopted() {
    let mut deployed = healthy();
    deployed.role.as_mut().expect("healthy has a role").tagged = false;
    let plan = planned(&deployed);
    assert!(matches!(action(&plan, Resource::Role), Action::Adopt(_)), "{:?}", action(&plan, Resource::Role));
    assert_eq!(fields(&action(&plan, Resource::Role)), vec![Field::Tags]);
    assert_eq!(plan.role_arn, deployed.role.as_ref().map(|role| role.arn.clone()).unwrap_or_default());
    assert_eq!(action(&plan, Resource::Policy), Action::Keep);
}

// 10.

fn role_with(inline: &[(&str, serde_json::Value)]) -> RoleState {
    RoleState {
        arn: role::arn(NAME, &account()),
        tagged: true,
        cloudformation: None,
        trust_ok: true,
        inline: inline.iter().map(|(name, document)| ((*name).to_owned(), Some(document.clone()))).collect(),
        managed: Vec::new(),
        instance_profiles: Vec::new(),
    }
}

#[test]
fn another_regions_policies_are_left_alone() {
    let europe = stack().role_policy(&account_in("eu-west-1"));
    let mut deployed = healthy();
    deployed.role = Some(role_with(&[("counterctl-eu-west-1", europe.clone()), (LEGACY_POLICY_NAME, europe.clone())]));
    let plan = planned(&deployed);
    assert_eq!(action(&plan, Resource::Policy), Action::Create);
    assert_eq!(change(&plan, Resource::Policy).name, "counterctl-us-east-1");
    assert!(!touches(&action(&plan, Resource::Policy), Field::LegacyPolicy));
    let role = deployed.role.as_ref().expect("a role");
    assert_eq!(other_regions(role, "us-east-1"), vec!["eu-west-1".to_owned()]);
    assert_eq!(other_regions(role, "eu-west-1"), Vec::<String>::new());

    // With this region's policy in place, nothing is planned.
    let mut deployed = healthy();
    let here = stack().role_policy(&account());
    deployed.role = Some(role_with(&[
        ("counterctl-us-east-1", here),
        ("counterctl-eu-west-1", europe.clone()),
        (LEGACY_POLICY_NAME, europe),
    ]));
    let plan = planned(&deployed);
    assert_eq!(action(&plan, Resource::Policy), Action::Keep);
}

#[test]
fn a_legacy_policy_of_this_region_only_is_replaced() {
    let here = stack().role_policy(&account());
    let mut deployed = healthy();
    deployed.role = Some(role_with(&[("counterctl-us-east-1", here.clone()), (LEGACY_POLICY_NAME, here.clone())]));
    let plan = planned(&deployed);
    assert_eq!(fields(&action(&plan, Resource::Policy)), vec![Field::LegacyPolicy]);

    // A legacy policy naming two regions belongs to both: left alone.
    let mut both = here.clone();
    both["Statement"][0]["Resource"] =
        serde_json::json!([stack().table_arn(&account()), stack().table_arn(&account_in("eu-west-1")),]);
    deployed.role = Some(role_with(&[("counterctl-us-east-1", here), (LEGACY_POLICY_NAME, both)]));
    let plan = planned(&deployed);
    assert_eq!(action(&plan, Resource::Policy), Action::Keep);
}

#[test]
fn a_role_with_only_the_legacy_policy_of_this_region_gets_the_region_policy_and_loses_the_legacy_one() {
    // The role of the original manual setup: only the legacy policy, on this region.
    let here = stack().role_policy(&account());
    let mut deployed = healthy();
    deployed.role = Some(role_with(&[(LEGACY_POLICY_NAME, here)]));
    let plan = planned(&deployed);
    let action = action(&plan, Resource::Policy);
    assert!(
        action == Action::Create || touches(&action, Field::Document),
        "this region's policy is written: {action:?}"
    );
    assert!(touches(&action, Field::LegacyPolicy), "the legacy policy is deleted in the same run: {action:?}");
}

// 11.

#[test]
fn uninstall_deletes_only_tagged_resources() {
    let mut deployed = healthy();
    deployed.apis = vec![api(API, true, 1_000), api("api2", false, 500)];
    let changes = uninstall(NAME, &deployed, TABLE, false).changes();
    assert!(matches!(named(&changes, Resource::Api, API).action, Action::Delete(_)));
    assert!(matches!(named(&changes, Resource::Api, "api2").action, Action::Retain(_)));
    assert!(matches!(named(&changes, Resource::Function, NAME).action, Action::Delete(_)));
    assert!(matches!(named(&changes, Resource::LogGroup, "/aws/lambda/AtomicCounter").action, Action::Delete(_)));
    assert!(matches!(named(&changes, Resource::ApiKey, KEY).action, Action::Delete(_)));
    assert!(matches!(named(&changes, Resource::UsagePlan, PLAN).action, Action::Delete(_)));
    assert!(matches!(named(&changes, Resource::Role, NAME).action, Action::Delete(_)));
    assert!(!changes.iter().any(|change| change.resource == Resource::Policy), "the role goes with its policies");

    function_mut(&mut deployed).tagged = false;
    deployed.log_group.as_mut().expect("a log group").tagged = false;
    deployed.keys[0].tagged = false;
    deployed.usage_plans[0].tagged = false;
    deployed.role.as_mut().expect("a role").tagged = false;
    let changes = uninstall(NAME, &deployed, TABLE, false).changes();
    for (resource, name) in [
        (Resource::Function, NAME),
        (Resource::LogGroup, "/aws/lambda/AtomicCounter"),
        (Resource::ApiKey, KEY),
        (Resource::UsagePlan, PLAN),
        (Resource::Role, NAME),
    ] {
        assert!(matches!(named(&changes, resource, name).action, Action::Retain(_)), "{resource:?} {name}");
    }
    assert!(changes.iter().all(|change| !change.breaking));
}

#[test]
fn uninstall_keeps_a_role_another_region_uses_and_deletes_this_regions_policy() {
    let mut deployed = healthy();
    let role = deployed.role.as_mut().expect("a role");
    role.inline.insert("counterctl-eu-west-1".into(), Some(stack().role_policy(&account_in("eu-west-1"))));
    let changes = uninstall(NAME, &deployed, TABLE, false).changes();
    let Action::Retain(reason) = &named(&changes, Resource::Role, NAME).action else {
        panic!("the role is not kept: {changes:#?}");
    };
    assert!(reason.contains("eu-west-1"), "{reason}");
    assert!(matches!(named(&changes, Resource::Policy, "counterctl-us-east-1").action, Action::Delete(_)));
    assert!(!changes.iter().any(|change| change.name == "counterctl-eu-west-1"), "{changes:#?}");
}

#[test]
fn uninstall_deletes_the_table_only_with_delete_data_and_only_when_tagged() {
    let mut deployed = healthy();
    let table_action = |deployed: &Deployed, delete_data: bool| {
        named(&uninstall(NAME, deployed, TABLE, delete_data).changes(), Resource::Table, TABLE).action.clone()
    };
    assert!(matches!(table_action(&deployed, false), Action::Retain(_)));
    assert!(matches!(table_action(&deployed, true), Action::Delete(_)));
    deployed.table.as_mut().expect("a table").tagged = false;
    assert!(matches!(table_action(&deployed, true), Action::Retain(_)));
    assert!(matches!(table_action(&deployed, false), Action::Retain(_)));
    deployed.table = None;
    assert_eq!(table_action(&deployed, true), Action::Absent);
}

#[test]
fn a_deployment_an_earlier_counterctl_described_by_its_fingerprint_alone_is_not_made_again() {
    let uri = stack().integration_uri(&account());
    let words = deployment_description("NONE", true, &uri);
    let (fingerprint, _) = words.split_once(" (").unwrap();
    let mut deployed = healthy();
    stage_mut(&mut deployed).deployment = Some(fingerprint.to_owned());
    assert!(planned(&deployed).up_to_date());
}

// 12.

#[test]
fn the_deployment_description_fingerprints_auth_and_integration() {
    let uri = stack().integration_uri(&account());
    let other_uri = stack().integration_uri(&account_in("eu-west-1"));
    let description = deployment_description("NONE", true, &uri);
    assert!(description.starts_with("counterctl "), "{description}");
    assert_eq!(description, deployment_description("NONE", true, &uri), "deterministic");
    assert_ne!(description, deployment_description("NONE", false, &uri));
    assert_ne!(description, deployment_description("NONE", true, &other_uri));
    assert_ne!(description, deployment_description("AWS_IAM", false, &uri), "IAM is another authorization");
}

// 13.

#[test]
fn a_missing_log_group_is_created_with_the_default_retention() {
    let mut deployed = healthy();
    deployed.log_group = None;
    let plan = planned(&deployed);
    assert_eq!(action(&plan, Resource::LogGroup), Action::Create);
    assert_eq!(change(&plan, Resource::LogGroup).name, "/aws/lambda/AtomicCounter");
    assert_eq!(plan.wanted.log_retention_days, Some(30));
}

#[test]
fn a_log_group_keeping_logs_forever_is_left_so_with_advice() {
    let mut deployed = healthy();
    deployed.log_group = Some(LogGroupState { retention_days: None, tagged: true, cloudformation: None });
    let plan = planned(&deployed);
    assert_eq!(action(&plan, Resource::LogGroup), Action::Keep);
    assert_eq!(plan.wanted.log_retention_days, None);
    assert_eq!(plan.advisories.len(), 1, "{:?}", plan.advisories);
    assert!(plan.advisories[0].contains("forever"), "{:?}", plan.advisories);
}

#[test]
fn a_retention_given_updates_the_log_group() {
    let options = Options { log_retention_days: Some(7), ..options() };
    let plan = plan_with(&healthy(), &options);
    assert_eq!(
        action(&plan, Resource::LogGroup),
        Action::Update(vec![Diff { field: Field::Retention, from: "30 days".into(), to: "7 days".into() }])
    );
    assert_eq!(changing(&plan), vec![(Resource::LogGroup, "/aws/lambda/AtomicCounter".to_owned())]);
}

// Found in review.

#[test]
fn a_function_without_table_name_uses_the_default_table_and_keeps_it() {
    let mut deployed = healthy();
    function_mut(&mut deployed).variables.clear();
    deployed.table = Some(table(counter_function::dynamo::DEFAULT_TABLE));
    let plan = planned(&deployed);
    assert_eq!(plan.stack.table, counter_function::dynamo::DEFAULT_TABLE);
    let options = options();
    let refused = install(&with_table(&options, "Foo", false), &deployed).expect_err("a switch without --switch-table");
    assert_eq!(
        refused,
        Refusal::TableSwitch { current: counter_function::dynamo::DEFAULT_TABLE.into(), asked: "Foo".into() }
    );
}

#[test]
fn a_table_an_uninstall_kept_is_never_replaced_by_a_new_one() {
    let mut deployed = healthy();
    // As uninstall leaves it: no function, no role, the table kept.
    deployed.function = None;
    deployed.role = None;
    deployed.table = None;
    deployed.kept_tables = vec!["Counters-old".into()];
    let refused = install(&request(&options()), &deployed).expect_err("a new table would restart the counters");
    assert!(matches!(&refused, Refusal::KeptTable { tables, .. } if tables == "Counters-old"), "{refused:?}");
}

#[test]
fn ttl_on_another_attribute_is_advised_not_changed() {
    let mut deployed = healthy();
    deployed.table.as_mut().expect("a table").ttl = Ttl::Other("ENABLED on `ttl`".into());
    let plan = planned(&deployed);
    assert_eq!(action(&plan, Resource::Table), Action::Keep);
    assert!(plan.advisories.iter().any(|advice| advice.contains("TTL ENABLED on `ttl`")), "{:?}", plan.advisories);
}

#[test]
fn a_table_switch_stops_callers_so_it_is_breaking() {
    let options = options();
    let mut deployed = healthy();
    deployed.table = Some(table("Other"));
    deployed.counters =
        Some(Counters { current: BTreeMap::from([("a".into(), 5)]), new: BTreeMap::from([("a".into(), 5)]) });
    let plan = install(&with_table(&options, "Other", true), &deployed).expect("level counters");
    assert_eq!(plan.function.table_switch.as_deref(), Some(TABLE));
    assert!(change(&plan, Resource::Function).breaking);
    assert!(planned(&healthy()).function.table_switch.is_none());
}

#[test]
fn uninstall_keeps_a_role_that_has_policies_counterctl_did_not_write() {
    let mut deployed = healthy();
    let role = deployed.role.as_mut().expect("a role");
    role.inline.insert("lambda-logs".into(), None);
    let changes = uninstall(NAME, &deployed, TABLE, false).changes();
    let Action::Retain(reason) = &named(&changes, Resource::Role, NAME).action else { panic!("{changes:?}") };
    assert!(reason.contains("lambda-logs"), "{reason}");
    assert!(matches!(named(&changes, Resource::Policy, "counterctl-us-east-1").action, Action::Delete(_)));

    let mut deployed = healthy();
    let wildcard = serde_json::json!({"Statement": [{"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"}]});
    deployed.role.as_mut().expect("a role").inline.insert(LEGACY_POLICY_NAME.into(), Some(wildcard));
    let changes = uninstall(NAME, &deployed, TABLE, false).changes();
    assert!(matches!(named(&changes, Resource::Role, NAME).action, Action::Retain(_)), "a wildcard names no region");

    let mut deployed = healthy();
    deployed.role.as_mut().expect("a role").instance_profiles = vec!["profile".into()];
    let changes = uninstall(NAME, &deployed, TABLE, false).changes();
    assert!(matches!(named(&changes, Resource::Role, NAME).action, Action::Retain(_)));
}

#[test]
fn the_table_a_stack_kept_is_accepted_and_any_other_refused() {
    let mut deployed = healthy();
    deployed.function = None;
    deployed.role = None;
    deployed.kept_tables = vec![counter_function::dynamo::DEFAULT_TABLE.into(), "Foo".into()];
    deployed.table = Some(table(counter_function::dynamo::DEFAULT_TABLE));
    install(&request(&options()), &deployed).expect("the default table is one the stack kept");
    deployed.kept_tables = vec!["Foo".into()];
    let refused = install(&request(&options()), &deployed).expect_err("another service's AtomicCounters");
    assert!(matches!(refused, Refusal::KeptTable { .. }), "{refused:?}");
}

#[test]
fn a_function_left_refusing_every_invocation_is_let_run_again() {
    let mut deployed = healthy();
    function_mut(&mut deployed).reserved_concurrency = Some(0);
    let plan = planned(&deployed);
    assert_eq!(fields(&action(&plan, Resource::Function)), vec![Field::Concurrency]);
    function_mut(&mut deployed).reserved_concurrency = Some(10);
    assert_eq!(action(&planned(&deployed), Resource::Function), Action::Keep, "a reserved concurrency of 10 is kept");
}

#[test]
fn during_a_switch_the_policy_grants_both_tables() {
    let both = stack().role_policy_with(&account(), Some("Old"));
    let resources = both["Statement"][0]["Resource"].as_array().expect("two tables").clone();
    assert_eq!(resources.len(), 2);
    assert!(resources[0].as_str().unwrap().ends_with("table/Old"), "{resources:?}");
    assert_eq!(stack().role_policy(&account())["Statement"][0]["Resource"], stack().table_arn(&account()));
}

// Issue 24, item 7: a stack's table that is gone is never made again empty by default.

fn recreating(options: &Options) -> Request<'_> {
    Request { recreate_table: true, ..request(options) }
}

#[test]
fn a_table_the_function_uses_that_is_gone_is_refused_before_any_write() {
    let mut deployed = healthy();
    deployed.table = None;
    let refused = install(&request(&options()), &deployed).expect_err("a new table would restart every counter");
    assert_eq!(refused, Refusal::TableLost { stack: NAME.into(), table: TABLE.into() });
    let message = refused.to_string();
    assert!(message.contains("its counters with it") && message.contains("1, 2, 3 again"), "{message}");
    assert!(message.contains("restore-table-from-backup") && message.contains("--recreate-table"), "{message}");
}

#[test]
fn with_the_function_gone_too_the_roles_grant_still_records_the_table() {
    let mut deployed = healthy();
    deployed.function = None;
    deployed.table = None;
    let refused = install(&request(&options()), &deployed).expect_err("the role's policy names the table");
    assert_eq!(refused, Refusal::TableLost { stack: NAME.into(), table: TABLE.into() });

    // Without --table, the stack's table is the one its records name, not the default.
    deployed.table = Some(table(TABLE));
    assert_eq!(planned(&deployed).stack.table, TABLE);
}

#[test]
fn recreate_table_makes_the_lost_table_as_a_change_that_breaks_callers() {
    let mut deployed = healthy();
    deployed.table = None;
    let options = options();
    let plan = install(&recreating(&options), &deployed).expect("--recreate-table accepts a new table");
    assert!(plan.table_lost);
    assert_eq!(action(&plan, Resource::Table), Action::Create);
    let breaking: Vec<Resource> = plan.breaking().iter().map(|change| change.resource).collect();
    assert_eq!(breaking, [Resource::Table]);
    // On a stack whose table is there, the option changes nothing.
    let plan = install(&recreating(&options), &healthy()).expect("nothing is lost");
    assert!(!plan.table_lost && plan.up_to_date());
}

#[test]
fn a_missing_table_nothing_records_is_made_without_refusal() {
    // A new stack, or one whose uninstall --delete-data took role, function and table.
    let mut deployed = healthy();
    (deployed.function, deployed.role, deployed.table) = (None, None, None);
    deployed.apis.clear();
    deployed.api = None;
    deployed.keys.clear();
    deployed.usage_plans.clear();
    deployed.log_group = None;
    let plan = planned(&deployed);
    assert_eq!(action(&plan, Resource::Table), Action::Create);
    assert!(!plan.table_lost && !change(&plan, Resource::Table).breaking);
    assert!(plan.breaking().is_empty());
}

#[test]
fn a_table_restored_under_the_stacks_name_is_adopted_not_made_again() {
    // A restore carries no tags, no TTL and no point-in-time recovery
    // (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/pointintimerecovery_restores.html).
    let mut deployed = healthy();
    deployed.table = Some(TableState {
        tagged: false,
        deletion_protection: false,
        point_in_time_recovery: false,
        ttl: Ttl::Off,
        ..table(TABLE)
    });
    let plan = planned(&deployed);
    assert!(!plan.table_lost);
    assert_eq!(fields(&action(&plan, Resource::Table)), [Field::Ttl]);
    assert!(matches!(action(&plan, Resource::Table), Action::Adopt(_)));
    assert!(plan.advisories.iter().any(|advice| advice.contains("--protect-table")), "{:?}", plan.advisories);
}

#[test]
fn the_roles_grant_names_the_tables_of_its_region_the_new_one_last() {
    let mut deployed = healthy();
    let switching = stack().role_policy_with(&account(), Some("Old"));
    deployed.role.as_mut().expect("a role").inline.insert("counterctl-us-east-1".into(), Some(switching));
    let role = deployed.role.as_ref().expect("a role");
    assert_eq!(role::granted_tables(role, "us-east-1"), ["Old", TABLE]);
    assert!(role::granted_tables(role, "eu-west-1").is_empty(), "another region's policy is not read");
    deployed.function = None;
    assert_eq!(deployed.recorded_table().as_deref(), Some(TABLE));
    assert!(deployed.records("Old") && deployed.records(TABLE) && !deployed.records("Other"));
}

// Issue 9: --auth iam.

#[test]
fn iam_auth_signs_the_method_drops_key_and_usage_plan_and_throttles_the_stage() {
    let options = Options { auth: Some(Auth::Iam), ..options() };
    let plan = plan_with(&healthy(), &options);
    assert_eq!(fields(&action(&plan, Resource::Route)), vec![Field::Method]);
    assert!(change(&plan, Resource::Route).breaking, "callers must sign from now on");
    assert!(matches!(action(&plan, Resource::ApiKey), Action::Delete(_)));
    assert!(matches!(action(&plan, Resource::UsagePlan), Action::Delete(_)));
    let stage = fields(&action(&plan, Resource::Stage));
    assert!(stage.contains(&Field::Deployment) && stage.contains(&Field::Throttle), "{stage:?}");
    assert_eq!(
        plan.wanted.throttle,
        Throttle { rate: 50.0, burst: 100 },
        "the usage plan's throttle moves to the stage"
    );
    assert!(rest(&plan).deployment.starts_with("counterctl "));
    assert_ne!(rest(&plan).deployment, rest(&planned(&healthy())).deployment);
}

#[test]
fn a_deployed_iam_stack_keeps_iam_and_its_stage_throttle() {
    let mut deployed = healthy();
    let uri = stack().integration_uri(&account());
    let method = method_mut(&mut deployed);
    method.authorization = "AWS_IAM".into();
    method.key_required = false;
    deployed.keys.clear();
    deployed.usage_plans.clear();
    let stage = stage_mut(&mut deployed);
    stage.deployment = Some(deployment_description("AWS_IAM", false, &uri));
    stage.throttle = Some(Throttle { rate: 7.0, burst: 9 });
    let plan = planned(&deployed);
    assert!(plan.up_to_date(), "{:?}", changing(&plan));
    assert_eq!(plan.wanted.auth, Auth::Iam);
    assert_eq!(plan.wanted.throttle, Throttle { rate: 7.0, burst: 9 });
    let plan = plan_with(&deployed, &Options { rate_limit: Some(8.0), ..options() });
    assert_eq!(fields(&action(&plan, Resource::Stage)), vec![Field::Throttle]);
}

#[test]
fn max_concurrency_is_set_kept_and_removed() {
    use crate::settings::MaxConcurrency;
    let plan = plan_with(&healthy(), &Options { max_concurrency: Some(MaxConcurrency::Limit(5)), ..options() });
    assert_eq!(fields(&action(&plan, Resource::Function)), vec![Field::Concurrency]);
    assert_eq!(plan.wanted.function.max_concurrency, Some(5));
    let mut deployed = healthy();
    function_mut(&mut deployed).reserved_concurrency = Some(5);
    assert!(planned(&deployed).up_to_date(), "not given, the deployed cap is kept");
    let plan = plan_with(&deployed, &Options { max_concurrency: Some(MaxConcurrency::Off), ..options() });
    assert_eq!(fields(&action(&plan, Resource::Function)), vec![Field::Concurrency]);
    assert_eq!(plan.wanted.function.max_concurrency, None);
}

// Issue 9: the function URL front.

#[test]
fn a_function_url_front_signs_by_default_says_so_and_replaces_the_rest_api() {
    use crate::settings::Front;
    let plan = plan_with(&healthy(), &Options { front: Some(Front::FunctionUrl), ..options() });
    assert_eq!(plan.front(), Front::FunctionUrl);
    assert_eq!(plan.wanted.auth, Auth::Iam, "the deployed api-key cannot go along: iam");
    assert_eq!(action(&plan, Resource::FunctionUrl), Action::Create);
    assert!(change(&plan, Resource::FunctionUrl).breaking, "callers get a new URL");
    assert!(matches!(named(&plan.changes(), Resource::Api, API).action, Action::Delete(_)));
    assert!(named(&plan.changes(), Resource::Api, API).breaking);
    assert!(matches!(action(&plan, Resource::Permission), Action::Delete(_)));
    assert!(matches!(action(&plan, Resource::ApiKey), Action::Delete(_)));
    assert!(matches!(action(&plan, Resource::UsagePlan), Action::Delete(_)));
    assert_eq!(duplicate_apis(&plan), vec![API.to_owned()]);
    assert_eq!(plan.signing_service(), "lambda");
    assert!(plan.advisories.iter().any(|line| line.starts_with("auth api-key → iam: a function URL has no API keys")));
    let said = plan_with(&healthy(), &Options { front: Some(Front::FunctionUrl), auth: Some(Auth::Iam), ..options() });
    assert!(said.advisories.iter().all(|line| !line.starts_with("auth ")), "--auth given: nothing to tell");
}

#[test]
fn api_key_auth_on_a_function_url_is_refused() {
    use crate::settings::Front;
    let options = Options { front: Some(Front::FunctionUrl), auth: Some(Auth::ApiKey), ..options() };
    let refused = install(&request(&options), &healthy()).expect_err("no keys on a function URL");
    assert_eq!(refused, Refusal::ApiKeyOnFunctionUrl);
}

#[test]
fn a_deployed_function_url_is_kept_its_public_access_follows_auth_and_a_move_back_says_the_auth_stays() {
    use crate::resources::function_url::UrlState;
    use crate::settings::Front;
    let mut deployed = healthy();
    deployed.apis.clear();
    deployed.api = None;
    deployed.keys.clear();
    deployed.usage_plans.clear();
    function_mut(&mut deployed).permission = None;
    deployed.function_url = Some(UrlState {
        url: "https://x.lambda-url.us-east-1.on.aws/".into(),
        auth_type: "AWS_IAM".into(),
        on_alias: true,
        own_left: false,
    });
    deployed.alarms = alarms_for(&stack(), Front::FunctionUrl, 15);
    let plan = planned(&deployed);
    assert_eq!(plan.front(), Front::FunctionUrl, "the deployed front is kept");
    assert!(plan.up_to_date(), "{:?}", changing(&plan));
    assert_eq!(plan.deployed_url().as_deref(), Some("https://x.lambda-url.us-east-1.on.aws/"));

    let public = plan_with(&deployed, &Options { auth: Some(Auth::None), ..options() });
    let fields = fields(&action(&public, Resource::FunctionUrl));
    assert_eq!(fields, vec![Field::Method, Field::Statement], "NONE, and the public statements");
    assert!(change(&public, Resource::FunctionUrl).breaking);

    let back = plan_with(&deployed, &Options { front: Some(Front::Rest), ..options() });
    assert!(matches!(action(&back, Resource::FunctionUrl), Action::Delete(_)));
    assert_eq!(action(&back, Resource::Api), Action::Create);
    assert!(change(&back, Resource::Api).breaking, "a new URL for callers");
    assert_eq!(back.wanted.auth, Auth::Iam, "iam goes along to the REST front");
    assert!(
        back.advisories.iter().any(|line| line.starts_with("auth stays iam on the REST API")),
        "{:?}",
        back.advisories
    );
}

#[test]
fn both_fronts_deployed_is_refused_until_told_which_to_keep() {
    use crate::resources::function_url::UrlState;
    use crate::settings::Front;
    let mut deployed = healthy();
    deployed.function_url = Some(UrlState {
        url: "https://x.lambda-url.us-east-1.on.aws/".into(),
        auth_type: "AWS_IAM".into(),
        on_alias: true,
        own_left: false,
    });
    assert_eq!(install(&request(&options()), &deployed).expect_err("which one?"), Refusal::BothFronts);
    let rest = plan_with(&deployed, &Options { front: Some(Front::Rest), auth: Some(Auth::ApiKey), ..options() });
    assert!(matches!(action(&rest, Resource::FunctionUrl), Action::Delete(_)));
}

#[test]
fn a_public_statement_left_behind_is_removed_on_the_rest_front() {
    let mut deployed = healthy();
    function_mut(&mut deployed).public_statements = 1;
    let plan = planned(&deployed);
    assert!(
        matches!(action(&plan, Resource::FunctionUrl), Action::Delete(_)),
        "{:?}",
        action(&plan, Resource::FunctionUrl)
    );
}

#[test]
fn a_stage_throttle_left_from_iam_follows_the_wanted_throttle() {
    let mut deployed = healthy();
    stage_mut(&mut deployed).throttle = Some(Throttle { rate: 50.0, burst: 100 });
    assert!(planned(&deployed).up_to_date(), "equal to the usage plan's: nothing to do");
    let plan = plan_with(&deployed, &Options { rate_limit: Some(200.0), ..options() });
    assert_eq!(fields(&action(&plan, Resource::Stage)), vec![Field::Throttle], "it would cap callers at 50");
    assert!(touches(&action(&plan, Resource::UsagePlan), Field::Throttle));
}

/// The planned alarms by name, with their actions.
fn alarm_actions(plan: &Plan) -> Vec<(String, Action<Vec<Diff>>)> {
    plan.alarms.wanted.iter().map(|(spec, planned)| (spec.name.clone(), planned.row().action)).collect()
}

#[test]
fn a_new_stack_gets_five_alarms_on_its_own_function_front_and_table() {
    let mut deployed = healthy();
    deployed.function = None;
    deployed.alarms.clear();
    let options = Options { alarm_topic: Some(TOPIC.into()), ..options() };
    let plan = plan_with(&deployed, &options);
    let specs: Vec<&AlarmSpec> = plan.alarms.wanted.iter().map(|(spec, _)| spec).collect();
    let metrics: Vec<(&str, &str, &str)> =
        specs.iter().map(|spec| (spec.namespace.as_str(), spec.metric.as_str(), spec.statistic.as_str())).collect();
    assert_eq!(
        metrics,
        [
            ("AWS/Lambda", "Errors", "Sum"),
            ("AWS/Lambda", "Throttles", "Sum"),
            ("AWS/Lambda", "Duration", "p99"),
            ("AWS/ApiGateway", "5XXError", "Sum"),
            ("AWS/DynamoDB", "ThrottledRequests", "Sum"),
        ]
    );
    assert!(specs.iter().all(|spec| spec.actions == [TOPIC] && spec.treat_missing_data == "notBreaching"));
    assert_eq!(specs[2].threshold, 7_500.0, "half the 15 s timeout, in ms");
    assert_eq!(specs[3].dimensions, [("ApiName".to_owned(), NAME.to_owned()), ("Stage".to_owned(), "prod".to_owned())]);
    assert_eq!(
        specs[4].dimensions,
        [("Operation".to_owned(), "UpdateItem".to_owned()), ("TableName".to_owned(), plan.stack.table.clone())]
    );
    assert!(alarm_actions(&plan).iter().all(|(_, action)| *action == Action::Create));
}

#[test]
fn a_deployed_stack_without_alarms_keeps_none_and_is_told_how_to_add_them() {
    let mut deployed = healthy();
    deployed.alarms.clear();
    let plan = planned(&deployed);
    assert!(plan.up_to_date(), "{:?}", changing(&plan));
    assert!(plan.alarms.wanted.is_empty());
    assert!(plan.advisories.iter().any(|advice| advice.contains("--alarms on")), "{:?}", plan.advisories);
    let on = plan_with(&deployed, &Options { alarms: Some(crate::settings::Switch::On), ..options() });
    assert_eq!(on.alarms.wanted.len(), 5);
    assert!(on.advisories.iter().any(|advice| advice.contains("--alarm-email")), "no topic: {:?}", on.advisories);
}

#[test]
fn alarms_off_deletes_the_stacks_alarms_and_leaves_others_alone() {
    let mut deployed = healthy();
    deployed.alarms[0].tagged = false;
    let plan = plan_with(&deployed, &Options { alarms: Some(crate::settings::Switch::Off), ..options() });
    assert!(plan.alarms.wanted.is_empty());
    let deleted: Vec<&str> =
        plan.alarms.unwanted.targets.iter().flat_map(|alarms| &alarms.0).map(String::as_str).collect();
    assert_eq!(deleted.len(), 4, "{deleted:?}");
    assert!(!deleted.contains(&deployed.alarms[0].spec.name.as_str()), "an untagged alarm is not ours");
    assert!(!plan.up_to_date());
}

#[test]
fn options_not_given_keep_the_alarms_topic_and_a_front_switch_moves_the_front_alarm() {
    let plan = planned(&healthy());
    assert_eq!(plan.wanted.alarms, Alarms::On { notify: Notify::Topic(TOPIC.into()) });
    assert!(alarm_actions(&plan).iter().all(|(_, action)| *action == Action::Keep));

    let moved = plan_with(&healthy(), &Options { front: Some(Front::FunctionUrl), ..options() });
    let changed: Vec<String> =
        alarm_actions(&moved).into_iter().filter(|(_, action)| *action != Action::Keep).map(|(name, _)| name).collect();
    assert_eq!(changed, [format!("{NAME}-front-5xx")]);
    let front = moved.alarms.wanted.iter().find(|(spec, _)| spec.name.ends_with("front-5xx")).unwrap();
    assert_eq!((front.0.namespace.as_str(), front.0.metric.as_str()), ("AWS/Lambda", "Url5xxCount"));

    let other_topic = "arn:aws:sns:us-east-1:123456789012:pager";
    let retargeted = plan_with(&healthy(), &Options { alarm_topic: Some(other_topic.into()), ..options() });
    assert!(retargeted.alarms.wanted.iter().all(|(spec, planned)| spec.actions == [other_topic] && planned.changes()));
}

/// The stack's own alarm topic, with `emails` subscribed (`None`: pending).
fn own_topic(tagged: bool, emails: &[(&str, bool)]) -> TopicState {
    let arn = topic::arn(&account(), NAME);
    let subscriptions = emails
        .iter()
        .map(|(email, confirmed)| Subscription {
            email: (*email).to_owned(),
            arn: confirmed.then(|| format!("{arn}:{email}")),
        })
        .collect();
    TopicState { arn, tagged, subscriptions }
}

/// A healthy stack whose alarms send to its own topic, with `emails` subscribed.
fn healthy_with_own_topic(emails: &[(&str, bool)]) -> Deployed {
    let mut deployed = healthy();
    let own = own_topic(true, emails);
    for alarm in &mut deployed.alarms {
        alarm.spec.actions = vec![own.arn.clone()];
    }
    deployed.topic = Some(own);
    deployed
}

fn topic_rows(plan: &Plan) -> Vec<(Resource, String, Action<Vec<Diff>>)> {
    plan.topic.rows().map(|row| (row.resource, row.name, row.action)).collect()
}

#[test]
fn alarm_email_makes_the_stacks_topic_subscribes_the_address_and_points_every_alarm_at_it() {
    let mut deployed = healthy();
    deployed.function = None;
    deployed.alarms.clear();
    let plan = plan_with(&deployed, &Options { alarm_email: Some("ops@example.com".into()), ..options() });
    let own = topic::arn(&account(), NAME);
    assert_eq!(
        topic_rows(&plan),
        [
            (Resource::Topic, format!("{NAME}-alarms"), Action::Create),
            (Resource::Subscription, "ops@example.com".to_owned(), Action::Create),
        ]
    );
    assert_eq!(plan.topic.subscribes(), Some("ops@example.com"));
    assert!(plan.alarms.wanted.iter().all(|(spec, _)| spec.actions == [own.clone()]));
    assert!(!plan.advisories.iter().any(|advice| advice.contains("reach nobody")), "{:?}", plan.advisories);
}

#[test]
fn options_not_given_keep_the_stacks_topic_and_its_subscription_so_a_rerun_writes_nothing() {
    let deployed = healthy_with_own_topic(&[("ops@example.com", false)]);
    let plan = planned(&deployed);
    assert_eq!(plan.wanted.alarms, Alarms::On { notify: Notify::Email(None) });
    assert!(plan.up_to_date(), "{:?}", changing(&plan));
    let same = plan_with(&deployed, &Options { alarm_email: Some("ops@example.com".into()), ..options() });
    assert!(same.up_to_date(), "the same address, still pending, is not subscribed again: {:?}", changing(&same));
    assert_eq!(same.topic.subscribes(), None);
}

#[test]
fn a_changed_alarm_email_replaces_a_confirmed_subscription_and_leaves_a_pending_one_to_lapse() {
    let deployed = healthy_with_own_topic(&[("old@example.com", true), ("older@example.com", false)]);
    let plan = plan_with(&deployed, &Options { alarm_email: Some("new@example.com".into()), ..options() });
    let rows = topic_rows(&plan);
    assert_eq!(rows[0], (Resource::Topic, format!("{NAME}-alarms"), Action::Keep));
    assert_eq!(rows[1], (Resource::Subscription, "new@example.com".to_owned(), Action::Create));
    assert_eq!(
        rows[2],
        (Resource::Subscription, "old@example.com".to_owned(), Action::Delete("replaced by new@example.com".into()))
    );
    assert!(matches!(&rows[3], (Resource::Subscription, email, Action::Retain(why))
        if email == "older@example.com" && why.contains("48 hours")));
    let unsubscribed: Vec<&str> =
        plan.topic.replaced.iter().flat_map(|deletion| &deletion.targets).map(|arn| arn.0.as_str()).collect();
    assert_eq!(unsubscribed, [format!("{}:old@example.com", topic::arn(&account(), NAME))]);
    assert!(plan.alarms.wanted.iter().all(|(_, planned)| !planned.changes()), "the alarms keep their topic");
}

#[test]
fn alarms_off_or_another_topic_deletes_the_stacks_own_topic_but_never_an_untagged_one() {
    let deployed = healthy_with_own_topic(&[("ops@example.com", true)]);
    let off = plan_with(&deployed, &Options { alarms: Some(crate::settings::Switch::Off), ..options() });
    let own = topic::arn(&account(), NAME);
    assert_eq!(off.topic.unwanted.targets, [TopicArn(own.clone())]);
    let elsewhere = plan_with(&deployed, &Options { alarm_topic: Some(TOPIC.into()), ..options() });
    assert_eq!(elsewhere.topic.unwanted.targets, [TopicArn(own)]);
    assert!(elsewhere.alarms.wanted.iter().all(|(spec, _)| spec.actions == [TOPIC]));

    let mut untagged = deployed.clone();
    untagged.topic = Some(own_topic(false, &[]));
    let off = plan_with(&untagged, &Options { alarms: Some(crate::settings::Switch::Off), ..options() });
    assert!(off.topic.unwanted.targets.is_empty());
}

#[test]
fn alarm_email_or_topic_with_alarms_off_is_refused() {
    for options in [
        Options {
            alarms: Some(crate::settings::Switch::Off),
            alarm_email: Some("ops@example.com".into()),
            ..options()
        },
        Options { alarms: Some(crate::settings::Switch::Off), alarm_topic: Some(TOPIC.into()), ..options() },
    ] {
        let refused = install(&request(&options), &healthy()).map(|_| ()).unwrap_err();
        assert_eq!(refused, Refusal::AlarmTargetWithoutAlarms);
    }
}

#[test]
fn uninstall_deletes_the_stacks_own_topic_and_leaves_one_it_did_not_make() {
    let deployed = healthy_with_own_topic(&[("ops@example.com", true)]);
    let teardown = uninstall(NAME, &deployed, TABLE, false);
    assert_eq!(teardown.topic.targets, [TopicArn(topic::arn(&account(), NAME))]);
    let mut untagged = deployed;
    untagged.topic = Some(own_topic(false, &[]));
    let teardown = uninstall(NAME, &untagged, TABLE, false);
    assert!(teardown.topic.targets.is_empty());
    assert!(matches!(teardown.topic.row.action, Action::Retain(_)));
}

#[test]
fn a_topic_of_that_name_the_stack_did_not_make_is_never_taken_over() {
    let mut deployed = healthy();
    deployed.topic = Some(own_topic(false, &[("team@example.com", true)]));
    let options = Options { alarm_email: Some("ops@example.com".into()), ..options() };
    let refused = install(&request(&options), &deployed).map(|_| ()).unwrap_err();
    assert_eq!(refused, Refusal::TopicNotOurs { name: format!("{NAME}-alarms") });
    // Given as --alarm-topic before, it stays someone's topic.
    for alarm in &mut deployed.alarms {
        alarm.spec.actions = vec![topic::arn(&account(), NAME)];
    }
    let kept = planned(&deployed);
    assert_eq!(kept.wanted.alarms, Alarms::On { notify: Notify::Topic(topic::arn(&account(), NAME)) });
    assert!(kept.topic.unwanted.targets.is_empty());
}

#[test]
fn the_stacks_own_topic_deleted_by_hand_is_made_again() {
    let mut deployed = healthy_with_own_topic(&[("ops@example.com", true)]);
    deployed.topic = None;
    let plan = planned(&deployed);
    assert_eq!(plan.wanted.alarms, Alarms::On { notify: Notify::Email(None) });
    assert_eq!(plan.topic.topic.as_ref().map(|topic| topic.action.clone()), Some(Action::Create));
    assert!(plan.advisories.iter().any(|advice| advice.contains("has no email subscription")), "{:?}", plan.advisories);
}
