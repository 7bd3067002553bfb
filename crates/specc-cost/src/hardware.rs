//! The Trainium hardware table.
//!
//! Chip numbers are the table in the project's notes
//! (`/work/shared/notes/neuron.md`, "Hardware numbers for a roofline
//! model", collected from the AWS Neuron documentation): NeuronCores per
//! chip, dense bf16 and fp32 peaks, HBM size and bandwidth, chip-to-chip
//! NeuronLink bandwidth. Instances: trn1.2xlarge = 1 Trn1 chip,
//! trn1.32xlarge = 16 Trn1 chips, trn2.48xlarge = 16 Trn2 chips; inf2.xlarge
//! and inf2.8xlarge = 1 Inferentia2 chip, inf2.24xlarge = 6, inf2.48xlarge =
//! 12 (AWS's Inferentia2 architecture page: 2 NeuronCore-v2, 190 bf16 /
//! 47.5 fp32 TFLOPS, 32 GiB HBM at 820 GB/s per chip, the same core as
//! Trn1's; its NeuronLink-v2 figure, 192 GB/s per chip, is not in the notes
//! and is uncalibrated). An inf2 instance's tp degrees are the powers of two
//! that fit it (`specc compile --tp` takes powers of two): NxD's tp 24 on
//! inf2.48xlarge pads query heads, which specc does not.
//!
//! A tensor-parallel *rank* is the unit the runtime exposes as a
//! NeuronCore. On Trn1 that is one physical NeuronCore-v2. On Trn2 it is a
//! logical NeuronCore of two physical NeuronCore-v3 (LNC=2), the Neuron
//! SDK's default there: "Each Trn2 instance has 128 Neuron cores. With LNC=2,
//! you can set a TP degree up to 64" (NxD Inference tutorial "Deploying
//! Llama3.1 405B (Trn2)"), which is how AWS's published Trn2 numbers were
//! measured (`--tp-degree 64`, `NEURON_RT_VIRTUAL_CORE_SIZE=2`). A rank gets
//! its share of the chip: peak, HBM and bandwidth divided by the ranks per
//! chip.

use serde::Serialize;

/// One Trainium chip.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Chip {
    pub name: &'static str,
    /// Physical NeuronCores.
    pub cores: usize,
    /// Dense bf16 peak, FLOP/s.
    pub bf16_flops: f64,
    /// Dense fp32 peak, FLOP/s.
    pub fp32_flops: f64,
    /// HBM bytes.
    pub hbm_bytes: u64,
    /// HBM bandwidth, bytes/s.
    pub hbm_bandwidth: f64,
    /// Chip-to-chip NeuronLink bandwidth, bytes/s.
    pub link_bandwidth: f64,
}

const GIB: u64 = 1 << 30;

pub const TRN1: Chip = Chip {
    name: "Trn1",
    cores: 2,
    bf16_flops: 190e12,
    fp32_flops: 47.5e12,
    hbm_bytes: 32 * GIB,
    hbm_bandwidth: 820e9,
    link_bandwidth: 384e9,
};

pub const TRN2: Chip = Chip {
    name: "Trn2",
    cores: 8,
    bf16_flops: 667e12,
    fp32_flops: 181e12,
    hbm_bytes: 96 * GIB,
    hbm_bandwidth: 2.9e12,
    link_bandwidth: 1280e9,
};

pub const INF2: Chip = Chip {
    name: "Inferentia2",
    cores: 2,
    bf16_flops: 190e12,
    fp32_flops: 47.5e12,
    hbm_bytes: 32 * GIB,
    hbm_bandwidth: 820e9,
    link_bandwidth: 192e9,
};

/// An EC2 instance: chips, and how many physical cores make one rank.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Instance {
    pub name: &'static str,
    pub chip: Chip,
    pub chips: usize,
    /// Physical cores per rank (logical NeuronCore size: 1 on Trn1, 2 on Trn2).
    pub cores_per_rank: usize,
    /// The tensor-parallel degrees used on it (smallest first).
    pub tp_degrees: &'static [usize],
}

pub const INSTANCES: [Instance; 7] = [
    Instance { name: "trn1.2xlarge", chip: TRN1, chips: 1, cores_per_rank: 1, tp_degrees: &[1, 2] },
    Instance { name: "trn1.32xlarge", chip: TRN1, chips: 16, cores_per_rank: 1, tp_degrees: &[1, 2, 8, 16, 32] },
    Instance { name: "trn2.48xlarge", chip: TRN2, chips: 16, cores_per_rank: 2, tp_degrees: &[1, 2, 4, 8, 16, 32, 64] },
    Instance { name: "inf2.xlarge", chip: INF2, chips: 1, cores_per_rank: 1, tp_degrees: &[1, 2] },
    Instance { name: "inf2.8xlarge", chip: INF2, chips: 1, cores_per_rank: 1, tp_degrees: &[1, 2] },
    Instance { name: "inf2.24xlarge", chip: INF2, chips: 6, cores_per_rank: 1, tp_degrees: &[1, 2, 4, 8] },
    Instance { name: "inf2.48xlarge", chip: INF2, chips: 12, cores_per_rank: 1, tp_degrees: &[1, 2, 4, 8, 16] },
];

pub fn instance(name: &str) -> Option<Instance> {
    INSTANCES.into_iter().find(|i| i.name == name)
}

pub fn instance_names() -> Vec<&'static str> {
    INSTANCES.iter().map(|i| i.name).collect()
}

impl Instance {
    /// Ranks per chip.
    pub fn ranks_per_chip(&self) -> usize {
        (self.chip.cores / self.cores_per_rank).max(1)
    }

    /// Ranks (NeuronCores as the runtime sees them) in the instance.
    pub fn ranks(&self) -> usize {
        self.chips * self.ranks_per_chip()
    }

    fn share(&self) -> f64 {
        self.ranks_per_chip() as f64
    }

    /// Matmul peak of one rank, FLOP/s.
    pub fn rank_flops(&self, bf16: bool) -> f64 {
        (if bf16 { self.chip.bf16_flops } else { self.chip.fp32_flops }) / self.share()
    }

    /// HBM bandwidth of one rank, bytes/s.
    pub fn rank_bandwidth(&self) -> f64 {
        self.chip.hbm_bandwidth / self.share()
    }

    /// HBM of one rank, bytes.
    pub fn rank_hbm(&self) -> u64 {
        self.chip.hbm_bytes / self.ranks_per_chip() as u64
    }

    /// NeuronLink bandwidth available to one rank (the chip's links shared
    /// by its ranks), bytes/s.
    pub fn rank_link_bandwidth(&self) -> f64 {
        self.chip.link_bandwidth / self.share()
    }

    /// A line saying what a rank is.
    pub fn describe(&self) -> String {
        let rank = if self.cores_per_rank == 1 {
            "a rank is one NeuronCore".to_string()
        } else {
            format!(
                "a rank is a logical NeuronCore of {} physical cores (LNC={})",
                self.cores_per_rank, self.cores_per_rank
            )
        };
        format!(
            "{}: {} {} chip(s), {} ranks; {rank}: {:.1} TFLOPS bf16, {:.1} TFLOPS fp32, {:.0} GB/s HBM, {:.1} GiB HBM",
            self.name,
            self.chips,
            self.chip.name,
            self.ranks(),
            self.rank_flops(true) / 1e12,
            self.rank_flops(false) / 1e12,
            self.rank_bandwidth() / 1e9,
            self.rank_hbm() as f64 / GIB as f64
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_and_shares_follow_the_table() {
        let t1 = instance("trn1.32xlarge").unwrap();
        assert_eq!(t1.ranks(), 32);
        assert_eq!(t1.rank_hbm(), 16 * GIB);
        assert!((t1.rank_bandwidth() - 410e9).abs() < 1.0);
        let t2 = instance("trn2.48xlarge").unwrap();
        // 16 chips x 8 cores, LNC=2: 64 ranks, as NxDI's --tp-degree 64.
        assert_eq!(t2.ranks(), 64);
        assert_eq!(t2.rank_hbm(), 24 * GIB);
        assert!((t2.rank_flops(true) - 166.75e12).abs() < 1e6);
        assert_eq!(instance("trn1.2xlarge").unwrap().ranks(), 2);
        assert!(instance("p5.48xlarge").is_none());
        for i in INSTANCES {
            let largest = *i.tp_degrees.last().unwrap();
            assert!(largest <= i.ranks() && largest.is_power_of_two(), "{}", i.name);
            if i.chip.name != "Inferentia2" {
                assert_eq!(largest, i.ranks(), "{}", i.name);
            }
        }
        let inf = instance("inf2.48xlarge").unwrap();
        assert_eq!(inf.ranks(), 24);
        assert_eq!(inf.rank_hbm(), 16 * GIB);
    }
}
