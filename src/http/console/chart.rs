//! The volume chart: settled amount per UTC day for one (network, asset), laid out as SVG bars on
//! the server (no chart library, no script). One bar per day that had volume; its height is the
//! day's amount against the busiest day's.

use std::collections::BTreeMap;

use alloy::primitives::U256;

use crate::ledger::VolumeGroup;

pub const DAYS: i64 = 30;
const SLOT: i64 = 20;
const BAR: i64 = 14;
pub const HEIGHT: i64 = 120;
pub const WIDTH: i64 = DAYS * SLOT;

/// One day's bar, ready for the template.
pub struct Bar {
    pub day: String,
    pub amount: String,
    pub count: i64,
    pub x: i64,
    pub y: i64,
    pub width: i64,
    pub height: i64,
}

/// One chart: a network and asset, its bars, and its 30-day totals.
pub struct Series {
    pub network: String,
    pub asset: String,
    pub total_amount: String,
    pub total_count: i64,
    pub bars: Vec<Bar>,
}

/// Adds the ledger's groups up per (network, asset) and day; `first_day` is the leftmost slot.
/// An amount the ledger holds that is no decimal integer is a corrupt row: `Err` names it.
pub fn series(groups: &[VolumeGroup], first_day: i64) -> Result<Vec<Series>, String> {
    let mut sums: BTreeMap<(String, String), BTreeMap<i64, (U256, i64)>> = BTreeMap::new();
    for g in groups {
        let amount = U256::from_str_radix(&g.amount, 10)
            .map_err(|_| format!("settled amount `{}` is not a decimal integer", g.amount))?;
        let count = U256::from(u64::try_from(g.count).unwrap_or_default());
        let day = sums
            .entry((g.network.clone(), g.asset.clone()))
            .or_default()
            .entry(g.day)
            .or_insert((U256::ZERO, 0));
        day.0 = day.0.saturating_add(amount.saturating_mul(count));
        day.1 += g.count;
    }
    Ok(sums
        .into_iter()
        .map(|((network, asset), days)| {
            let max = days.values().map(|(a, _)| *a).max().unwrap_or(U256::ZERO);
            let total_amount = days
                .values()
                .fold(U256::ZERO, |acc, (a, _)| acc.saturating_add(*a));
            let total_count = days.values().map(|(_, c)| c).sum();
            let bars = days
                .into_iter()
                .map(|(day, (amount, count))| {
                    let height = scaled(amount, max);
                    Bar {
                        day: super::pages::date_of_day(day),
                        amount: amount.to_string(),
                        count,
                        x: (day - first_day).clamp(0, DAYS - 1) * SLOT + (SLOT - BAR) / 2,
                        y: HEIGHT - height,
                        width: BAR,
                        height,
                    }
                })
                .collect();
            Series {
                network,
                asset,
                total_amount: total_amount.to_string(),
                total_count,
                bars,
            }
        })
        .collect())
}

/// Bar height in pixels: at least 2 so a small day stays visible, the busiest day full height.
fn scaled(amount: U256, max: U256) -> i64 {
    if max.is_zero() {
        return 2;
    }
    // f64 is exact enough for a bar's pixel height.
    let ratio = f64::from(amount) / f64::from(max);
    ((ratio * (HEIGHT - 10) as f64).round() as i64).clamp(2, HEIGHT - 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(day: i64, amount: &str, count: i64) -> VolumeGroup {
        VolumeGroup {
            day,
            network: "eip155:1".into(),
            asset: "0xa".into(),
            amount: amount.into(),
            count,
        }
    }

    #[test]
    fn adds_amounts_exactly_per_day() {
        let big = "100000000000000000000000000000000000000"; // past u64 and f64's exact range
        let s = series(
            &[group(10, big, 3), group(10, "1", 2), group(12, "5", 1)],
            0,
        )
        .expect("valid amounts");
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].bars.len(), 2);
        assert_eq!(
            s[0].bars[0].amount,
            "300000000000000000000000000000000000002"
        );
        assert_eq!(s[0].bars[0].count, 5);
        assert_eq!(s[0].bars[0].height, HEIGHT - 10);
        assert_eq!(s[0].total_count, 6);
        assert_eq!(s[0].total_amount, "300000000000000000000000000000000000007");
    }

    #[test]
    fn a_corrupt_amount_is_an_error() {
        assert!(series(&[group(1, "12abc", 1)], 0).is_err());
    }
}
