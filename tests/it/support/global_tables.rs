//! DynamoDB global tables with multi-Region strong consistency (MRSC), which moto does
//! not have (it ignores `ReplicaUpdates`): the AWS proxy keeps them here. A table made
//! global in its home region is served in every replica region from the home region's
//! one table in moto, so a write in one region is read in another at once, as MRSC
//! promises. The rules are AWS's, enforced as AWS documents them
//! (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/V2globaltables_HowItWorks.html):
//! - an MRSC table is made from an empty table in one `UpdateTable` holding two replica
//!   creates, or one and a witness, with `MultiRegionConsistency: STRONG`, in regions of
//!   one region set; anything else is a `ValidationException`;
//! - no replica is added later, and one is removed only with another (or with the
//!   witness), which leaves a single-region table;
//! - an MRSC table supports no time to live and no transactions;
//! - a table with replicas is not deleted.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::aws_proxy::Fault;

/// The region sets, as the guide lists them (an oracle of its own, apart from
/// counterctl's table).
const REGION_SETS: [&[&str]; 3] = [
    &["us-east-1", "us-east-2", "us-west-2"],
    &["eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1"],
    &["ap-northeast-1", "ap-northeast-2", "ap-northeast-3"],
];

/// A global table: where it lives, and how many more `DescribeTable`s show its replicas
/// still `CREATING`.
#[derive(Debug, Clone)]
pub(crate) struct GlobalTable {
    pub(crate) home: String,
    pub(crate) replicas: Vec<String>,
    pub(crate) witness: Option<String>,
    creating_for: usize,
}

/// The global tables made through the proxy, by table name.
#[derive(Debug, Default)]
pub(crate) struct GlobalTables {
    tables: HashMap<String, GlobalTable>,
    /// How many `DescribeTable`s after the `UpdateTable` show the new replicas `CREATING`.
    pub(crate) creating_describes: usize,
    /// Whether `DescribeTable`'s `Replicas` lists the region asked from too (AWS's
    /// documents leave it open).
    pub(crate) list_asking_region: bool,
}

/// What the proxy does with a DynamoDB request.
pub(crate) enum Route {
    /// Forward it to moto, in `region` (the home region of a global table it names).
    Forward { region: String },
    /// Answer it so, without forwarding.
    Refuse(Fault),
}

fn validation(message: &str) -> Fault {
    Fault::new(400, "ValidationException", message)
}

impl GlobalTables {
    pub(crate) fn get(&self, table: &str) -> Option<&GlobalTable> {
        self.tables.get(table)
    }

    /// Where a request for `action` in `region` with `body` goes. `empty` says whether
    /// the table holds no item (asked of moto only for an MRSC `UpdateTable`).
    pub(crate) fn route(&mut self, action: &str, region: &str, body: &Value, empty: impl FnOnce() -> bool) -> Route {
        let table = table_of(body);
        if action == "UpdateTable"
            && (body.get("ReplicaUpdates").is_some() || body.get("GlobalTableWitnessUpdates").is_some())
        {
            return self.update_replicas(&table, region, body, empty);
        }
        let Some(global) = self.tables.get(&table) else { return Route::Forward { region: region.to_owned() } };
        if global.replicas.len() == 1 {
            // Its replicas were removed: a one-region table again, still kept in moto
            // under the region it was made in.
            let home = global.home.clone();
            if action == "DeleteTable" {
                self.tables.remove(&table);
            }
            return Route::Forward { region: home };
        }
        if global.witness.as_deref() == Some(region) || !global.replicas.iter().any(|r| r == region) {
            let message = format!("Requested resource not found: Table: {table} not found");
            return Route::Refuse(Fault::new(400, "ResourceNotFoundException", &message));
        }
        match action {
            "UpdateTimeToLive" => Route::Refuse(validation(
                "Time to Live (TTL) is not supported for multi-Region strong consistency (MRSC) global tables",
            )),
            "TransactWriteItems" | "TransactGetItems" => Route::Refuse(validation(
                "Transactions are not supported for multi-Region strong consistency (MRSC) global tables",
            )),
            "DeleteTable" => Route::Refuse(validation(
                "Cannot delete a table with replicas: remove its replicas (and witness) with UpdateTable first",
            )),
            _ => Route::Forward { region: global.home.clone() },
        }
    }

    fn update_replicas(&mut self, table: &str, region: &str, body: &Value, empty: impl FnOnce() -> bool) -> Route {
        let updates = |key: &str, verb: &str| -> Vec<String> {
            body[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|update| update[verb]["RegionName"].as_str().map(str::to_owned))
                .collect()
        };
        let (creates, deletes) = (updates("ReplicaUpdates", "Create"), updates("ReplicaUpdates", "Delete"));
        let (witness_creates, witness_deletes) =
            (updates("GlobalTableWitnessUpdates", "Create"), updates("GlobalTableWitnessUpdates", "Delete"));
        if let Some(global) = self.tables.get_mut(table) {
            if !global.replicas.iter().any(|replica| replica == region) {
                return Route::Refuse(validation("Replicas are updated from one of the table's replica regions"));
            }
            if !creates.is_empty() || !witness_creates.is_empty() {
                return Route::Refuse(validation(
                    "You cannot add replicas or a witness to a multi-Region strong consistency (MRSC) global table",
                ));
            }
            let removed = deletes.len() + witness_deletes.len();
            let witness_gone = witness_deletes.first() == global.witness.as_ref() || global.witness.is_none();
            if removed != 2 || !witness_gone || deletes.iter().any(|deleted| deleted == region) {
                return Route::Refuse(validation(
                    "An MRSC global table loses two replicas, or a replica and its witness, in one request",
                ));
            }
            global.replicas = vec![region.to_owned()];
            global.witness = None;
            return Route::Forward { region: global.home.clone() };
        }
        if body["MultiRegionConsistency"] != "STRONG" {
            return Route::Refuse(validation("This emulation makes strongly consistent (MRSC) global tables only"));
        }
        if witness_creates.len() > 1 || creates.len() + witness_creates.len() != 2 || !deletes.is_empty() {
            return Route::Refuse(validation("Unsupported table replica count"));
        }
        let mut all = vec![region.to_owned()];
        all.extend(creates.iter().cloned());
        all.extend(witness_creates.iter().cloned());
        let distinct = all.iter().enumerate().all(|(index, name)| !all[..index].contains(name));
        let one_set = REGION_SETS.iter().any(|set| all.iter().all(|name| set.contains(&name.as_str())));
        if !distinct || !one_set {
            return Route::Refuse(validation("MRSC global tables must be in three distinct Regions of one Region set"));
        }
        if !empty() {
            return Route::Refuse(validation(
                "A table must be empty to be converted to a multi-Region strong consistency (MRSC) global table",
            ));
        }
        let mut replicas = vec![region.to_owned()];
        replicas.extend(creates);
        let global = GlobalTable {
            home: region.to_owned(),
            replicas,
            witness: witness_creates.into_iter().next(),
            creating_for: self.creating_describes,
        };
        self.tables.insert(table.to_owned(), global);
        Route::Forward { region: region.to_owned() }
    }

    /// What `DescribeTable` (or `UpdateTable`'s `TableDescription`) adds for a global
    /// table asked about from `region`.
    pub(crate) fn description_patch(&mut self, table: &str, region: &str) -> Option<Value> {
        let list_asking_region = self.list_asking_region;
        let global = self.tables.get_mut(table).filter(|global| global.replicas.len() > 1)?;
        let status = if global.creating_for > 0 {
            global.creating_for -= 1;
            "CREATING"
        } else {
            "ACTIVE"
        };
        let replicas: Vec<Value> = global
            .replicas
            .iter()
            .filter(|name| list_asking_region || *name != region)
            .map(|name| json!({ "RegionName": name, "ReplicaStatus": if *name == global.home { "ACTIVE" } else { status } }))
            .collect();
        // Each replica has its region's ARN (moto's account).
        let arn = format!("arn:aws:dynamodb:{region}:123456789012:table/{table}");
        let mut patch = json!({ "Replicas": replicas, "MultiRegionConsistency": "STRONG", "TableArn": arn });
        if let Some(witness) = &global.witness {
            patch["GlobalTableWitnesses"] = json!([{ "RegionName": witness, "WitnessStatus": status }]);
        }
        Some(patch)
    }
}

/// The table a DynamoDB request names: by name, or for the tag calls by its ARN (which
/// names the region asked in).
pub(crate) fn table_of(request: &Value) -> String {
    let by_arn = request["ResourceArn"].as_str().and_then(|arn| arn.split_once(":table/")).map(|(_, table)| table);
    request["TableName"].as_str().or(by_arn).unwrap_or_default().to_owned()
}

/// The region in a SigV4 `Authorization` header's credential scope.
pub(crate) fn signed_region(authorization: &str) -> Option<&str> {
    // Credential=AKID/YYYYMMDD/REGION/SERVICE/aws4_request
    authorization.split("Credential=").nth(1)?.split(['/', ',']).nth(2)
}

/// `authorization` with its credential scope's region replaced by `region`: moto keeps a
/// table per region, named by that scope, and checks no signature.
pub(crate) fn resigned_for(authorization: &str, region: &str) -> Option<String> {
    let from = signed_region(authorization)?;
    Some(authorization.replacen(&format!("/{from}/dynamodb/"), &format!("/{region}/dynamodb/"), 1))
}
