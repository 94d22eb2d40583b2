//! The regions of a stack on a DynamoDB global table with multi-Region strong consistency
//! (MRSC): three replicas, or two and a witness, all in one region set. Checked before any
//! call, since AWS makes the table's regions and consistency for good in one `UpdateTable`.
//!
//! The rules are AWS's ("How DynamoDB global tables work", multi-Region strong
//! consistency: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/V2globaltables_HowItWorks.html#V2globaltables_HowItWorks.consistency-modes-mrsc):
//! - "MRSC global tables must be deployed in exactly three Regions", as three replicas or
//!   two replicas and a witness;
//! - "MRSC global tables cannot span Region sets", and the witness must be "within the
//!   same Region set" (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_CreateGlobalTableWitnessGroupMemberAction.html);
//! - one replica per region.

/// The region sets an MRSC table may be made in, as the guide above lists them.
pub(crate) const REGION_SETS: [(&str, &[&str]); 3] = [
    ("US", &["us-east-1", "us-east-2", "us-west-2"]),
    ("EU", &["eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1"]),
    ("AP", &["ap-northeast-1", "ap-northeast-2", "ap-northeast-3"]),
];

/// Where a multi-region stack runs: the home region, where its table is made and made
/// global, the other replica regions, and a witness region (which holds no function).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Regions {
    pub(crate) home: String,
    pub(crate) others: Vec<String>,
    pub(crate) witness: Option<String>,
}

/// Why `--regions` and `--witness-region` cannot make an MRSC table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RegionsRefusal {
    #[error(
        "{region} is given twice: a global table has one replica per region\n\
         hint: name each region once, e.g. --regions us-east-1,us-east-2,us-west-2"
    )]
    Twice { region: String },
    #[error(
        "a strongly consistent global table needs exactly three regions: three replicas (--regions A,B,C) or two \
         and a witness (--regions A,B --witness-region C); {given}\n\
         hint: {}",
        sets_hint()
    )]
    Count { given: String },
    #[error(
        "{region} is in no region set of strongly consistent global tables\n\
         hint: {}",
        sets_hint()
    )]
    NoSet { region: String },
    #[error(
        "{} are in different region sets ({}), and a strongly consistent global table cannot span sets\n\
         hint: {}", regions.join(", "), sets.join(", "), sets_hint()
    )]
    Mixed { regions: Vec<String>, sets: Vec<&'static str> },
}

fn sets_hint() -> String {
    let sets: Vec<String> =
        REGION_SETS.iter().map(|(name, regions)| format!("{name}: {}", regions.join(", "))).collect();
    format!("pick three regions of one set ({})", sets.join("; "))
}

impl Regions {
    /// The regions `--regions` (the first being home) and `--witness-region` name, if
    /// they can make an MRSC table.
    pub(crate) fn parse(regions: &[String], witness: Option<&str>) -> Result<Self, RegionsRefusal> {
        let mut all: Vec<&str> = regions.iter().map(String::as_str).collect();
        all.extend(witness);
        for (index, region) in all.iter().enumerate() {
            if all[..index].contains(region) {
                return Err(RegionsRefusal::Twice { region: (*region).to_owned() });
            }
        }
        match (regions.len(), witness) {
            (3, None) | (2, Some(_)) => {}
            (count, witness) => {
                let given = match witness {
                    Some(_) => format!("{count} replica region(s) and a witness were given"),
                    None => format!("{count} region(s) were given"),
                };
                return Err(RegionsRefusal::Count { given });
            }
        }
        let mut sets = Vec::new();
        for region in &all {
            let set = REGION_SETS.iter().find(|(_, members)| members.contains(region));
            match set {
                Some((name, _)) if !sets.contains(name) => sets.push(*name),
                Some(_) => {}
                None => return Err(RegionsRefusal::NoSet { region: (*region).to_owned() }),
            }
        }
        if sets.len() > 1 {
            return Err(RegionsRefusal::Mixed { regions: all.iter().map(|r| (*r).to_owned()).collect(), sets });
        }
        Ok(Self { home: regions[0].clone(), others: regions[1..].to_vec(), witness: witness.map(str::to_owned) })
    }

    /// The regions that run the function and its front: the replicas, home first.
    pub(crate) fn replicas(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.home.as_str()).chain(self.others.iter().map(String::as_str))
    }

    /// A deployed table's regions as seen from `asking`, one of its replicas, which
    /// comes first: AWS keeps no home once the table is global.
    pub(crate) fn of_table(asking: &str, replicas: &[String], witness: Option<&str>) -> Self {
        let others = replicas.iter().filter(|region| *region != asking).cloned().collect();
        Self { home: asking.to_owned(), others, witness: witness.map(str::to_owned) }
    }

    /// Whether both name the same replicas and witness, in any order.
    pub(crate) fn same_table(&self, other: &Self) -> bool {
        fn sorted(regions: &Regions) -> Vec<&str> {
            let mut replicas: Vec<&str> = regions.replicas().collect();
            replicas.sort_unstable();
            replicas
        }
        sorted(self) == sorted(other) && self.witness == other.witness
    }
}

/// A command's report for a stack in several regions (install, status, uninstall): the
/// table's regions, then each region's own report under its name.
#[derive(serde::Serialize)]
pub(crate) struct PerRegion<T> {
    /// Whether install would change nothing in any region (status's stack report only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) up_to_date: Option<bool>,
    pub(crate) table: String,
    /// The replicas' regions, the one asked from first.
    pub(crate) replicas: Vec<String>,
    pub(crate) witness: Option<String>,
    pub(crate) consistency: &'static str,
    pub(crate) regions: Vec<InRegion<T>>,
}

/// One region's part of a [`PerRegion`] report.
#[derive(serde::Serialize)]
pub(crate) struct InRegion<T> {
    pub(crate) region: String,
    #[serde(flatten)]
    pub(crate) report: T,
}

impl<T> PerRegion<T> {
    pub(crate) fn new(table: &str, regions: &Regions, reports: Vec<InRegion<T>>) -> Self {
        Self {
            up_to_date: None,
            table: table.to_owned(),
            replicas: regions.replicas().map(str::to_owned).collect(),
            witness: regions.witness.clone(),
            consistency: "strong",
            regions: reports,
        }
    }
}

impl<T: std::fmt::Display> std::fmt::Display for PerRegion<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let witness = self.witness.as_ref().map(|witness| format!(", witness {witness}")).unwrap_or_default();
        let replicas = self.replicas.join(", ");
        write!(f, "Table {}: a strongly consistent global table in {replicas}{witness}.", self.table)?;
        for InRegion { region, report } in &self.regions {
            write!(f, "\n\n== {region} ==\n{report}")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Regions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.replicas().collect::<Vec<_>>().join(", "))?;
        match &self.witness {
            Some(witness) => write!(f, " (witness {witness})"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn three_replicas_or_two_and_a_witness_of_one_set_make_a_table() {
        let three = Regions::parse(&regions(&["us-east-2", "us-east-1", "us-west-2"]), None).unwrap();
        assert_eq!(three.home, "us-east-2", "the first is home");
        assert_eq!(three.replicas().collect::<Vec<_>>(), ["us-east-2", "us-east-1", "us-west-2"]);
        let witnessed = Regions::parse(&regions(&["eu-west-1", "eu-central-1"]), Some("eu-west-3")).unwrap();
        assert_eq!(witnessed.witness.as_deref(), Some("eu-west-3"));
        assert_eq!(witnessed.replicas().count(), 2);
    }

    #[test]
    fn each_shape_aws_refuses_is_refused_with_its_reason() {
        let refused = |names: &[&str], witness| Regions::parse(&regions(names), witness).unwrap_err();
        assert!(matches!(refused(&["us-east-1", "us-east-1", "us-west-2"], None), RegionsRefusal::Twice { .. }));
        assert!(matches!(refused(&["us-east-1", "us-east-2"], Some("us-east-1")), RegionsRefusal::Twice { .. }));
        assert!(matches!(refused(&["us-east-1", "us-east-2"], None), RegionsRefusal::Count { .. }));
        assert!(matches!(
            refused(&["us-east-1", "us-east-2", "us-west-2"], Some("us-west-1")),
            RegionsRefusal::Count { .. }
        ));
        assert!(matches!(refused(&["us-east-1"], Some("us-east-2")), RegionsRefusal::Count { .. }));
        assert!(matches!(refused(&["us-east-1", "us-east-2", "sa-east-1"], None), RegionsRefusal::NoSet { .. }));
        let mixed = refused(&["us-east-1", "us-east-2"], Some("eu-west-1"));
        assert_eq!(
            mixed.clone(),
            RegionsRefusal::Mixed {
                regions: regions(&["us-east-1", "us-east-2", "eu-west-1"]),
                sets: vec!["US", "EU"],
            }
        );
        assert!(mixed.to_string().contains("hint: pick three regions of one set (US: us-east-1"), "{mixed}");
    }

    #[test]
    fn a_deployed_table_is_the_same_whichever_region_reads_it() {
        let given = Regions::parse(&regions(&["us-east-1", "us-east-2"]), Some("us-west-2")).unwrap();
        let read = Regions::of_table("us-east-2", &regions(&["us-east-1", "us-east-2"]), Some("us-west-2"));
        assert_eq!(read.home, "us-east-2", "the asking region comes first");
        assert!(given.same_table(&read));
        let without_witness = Regions::of_table("us-east-2", &regions(&["us-east-1", "us-east-2"]), None);
        assert!(!given.same_table(&without_witness));
        assert_eq!(given.to_string(), "us-east-1, us-east-2 (witness us-west-2)");
    }
}
