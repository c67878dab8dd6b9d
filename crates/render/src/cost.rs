//! The monthly and yearly cost of the platform, from each host's resources and `[pricing]`.
//!
//! Totals are always summed from the line items, in whole cents: the source document's own
//! totals are off (569 c/h printed for 596, 17.28 € for 17.27 €), and a report must not be.

use pic2_inventory::{Pricing, Resources, ValidInventory};

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LineItem {
    pub what: String,
    pub quantity: String,
    /// Euro cents per month.
    pub monthly_cents: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HostCost {
    pub host: String,
    pub items: Vec<LineItem>,
    pub monthly_cents: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CostReport {
    pub hosts: Vec<HostCost>,
    pub monthly_cents: u64,
    pub yearly_cents: u64,
}

/// `price × numerator / denominator`, rounded half up, in cents.
fn prorata(price_cents: u64, numerator: u64, denominator: u64) -> u64 {
    (price_cents * numerator * 2 + denominator) / (2 * denominator)
}

fn items(r: &Resources, p: &Pricing) -> Vec<LineItem> {
    let mut out = Vec::new();
    let mut push = |what: &str, quantity: String, cents: u64, present: bool| {
        if present {
            out.push(LineItem {
                what: what.into(),
                quantity,
                monthly_cents: cents,
            });
        }
    };
    push(
        "CPU",
        format!("{} core(s)", r.cpu),
        prorata(p.cpu, r.cpu.into(), 1),
        r.cpu > 0,
    );
    push(
        "RAM",
        format_ram(r.ram_mb),
        prorata(p.ram_gb, r.ram_mb.into(), 1024),
        r.ram_mb > 0,
    );
    push(
        "system disk",
        format!("{} GB", r.disk_gb),
        prorata(p.system_disk_gb, r.disk_gb.into(), 1),
        r.disk_gb > 0,
    );
    push(
        "data disk",
        format!("{} GB", r.data_disk_gb),
        prorata(p.data_disk_100gb, r.data_disk_gb.into(), 100),
        r.data_disk_gb > 0,
    );
    push(
        "public IPv4",
        format!("{}", r.ipv4),
        prorata(p.ipv4, r.ipv4.into(), 1),
        r.ipv4 > 0,
    );
    out
}

fn format_ram(mb: u32) -> String {
    if mb.is_multiple_of(1024) {
        format!("{} GB", mb / 1024)
    } else {
        format!("{mb} MB")
    }
}

/// The report, or `None` when the inventory has no `[pricing]`.
pub fn report(inv: &ValidInventory) -> Option<CostReport> {
    let pricing = inv.pricing?;
    let hosts: Vec<HostCost> = inv
        .hosts
        .iter()
        .map(|(name, host)| {
            let items = items(&host.resources, &pricing);
            let monthly_cents = items.iter().map(|i| i.monthly_cents).sum();
            HostCost {
                host: name.to_string(),
                items,
                monthly_cents,
            }
        })
        .collect();
    let monthly_cents = hosts.iter().map(|h| h.monthly_cents).sum();
    Some(CostReport {
        hosts,
        monthly_cents,
        yearly_cents: monthly_cents * 12,
    })
}

/// `1234` → `12.34`.
pub fn euros(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_costs_17_27_a_month_not_17_28() {
        let r = report(&crate::tests::document()).unwrap();
        let by_host: Vec<_> = r
            .hosts
            .iter()
            .map(|h| (h.host.as_str(), euros(h.monthly_cents)))
            .collect();
        assert_eq!(
            by_host,
            vec![("pic2", "2.27".to_string()), ("pic2s", "15.00".to_string())]
        );
        assert_eq!(euros(r.monthly_cents), "17.27");
        assert_eq!(euros(r.yearly_cents), "207.24");
        let pic2 = &r.hosts[0];
        assert_eq!(pic2.items[1].monthly_cents, 121, "512 MB at 2.42 €/GB");
    }

    #[test]
    fn rounding_is_half_up_in_cents() {
        assert_eq!(prorata(242, 100, 1024), 24); // 23.63 → 24
        assert_eq!(prorata(250, 150, 100), 375);
    }
}
