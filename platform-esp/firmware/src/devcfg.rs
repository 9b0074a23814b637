//! The per-device configuration partition (`pwconfig` in
//! `partitions.csv`, at [`FLASH_OFFSET`]): read once at boot and laid over
//! the build-time [`CONFIG`](crate::config::CONFIG). The format and its
//! checked parser are `punchwire_core::devconfig`, shared with the host's
//! `punchwire firmware-config`, which writes the image.
//!
//! * a valid partition: its fields win, absent fields keep the build-time
//!   values;
//! * a blank (erased) one: the build-time values, as before;
//! * anything else (bad magic, version, length, CRC or field) or a failed
//!   flash read: one log line saying what is wrong, then the device idles
//!   (it does not guess a configuration, and never panics on the content).

use esp_hal::peripherals::FLASH;
use esp_println::println;
use esp_storage::FlashStorage;
use punchwire_core::devconfig::{self, DevConfig, FLASH_OFFSET, PARTITION_SIZE};
use static_cell::StaticCell;

use crate::config::{Config, Mode, Role};

/// Where a valid partition's strings live for the rest of the run.
static DEVICE: StaticCell<DevConfig> = StaticCell::new();

/// What the boot found.
pub enum Boot {
    /// The configuration to run with.
    Run(Config),
    /// The partition is unusable: idle.
    Idle,
}

/// Reads the partition and returns the configuration to run with.
pub fn load(flash: FLASH<'static>, defaults: Config) -> Boot {
    match read(flash) {
        Ok(Ok(dev)) => {
            let dev: &'static DevConfig = DEVICE.init(dev);
            println!(
                "config: partition at {FLASH_OFFSET:#x} read; its fields replace the build-time ones"
            );
            Boot::Run(merge(dev, defaults))
        }
        Ok(Err(devconfig::Error::Blank)) => {
            println!(
                "config: partition at {FLASH_OFFSET:#x} is blank; using the build-time PW_* values"
            );
            Boot::Run(defaults)
        }
        Ok(Err(e)) => {
            println!(
                "config: partition at {FLASH_OFFSET:#x} is invalid ({e}); idling. Write a new one: \
                 punchwire firmware-config ... > cfg.bin; espflash write-bin {FLASH_OFFSET:#x} cfg.bin"
            );
            Boot::Idle
        }
        Err(e) => {
            println!(
                "config: cannot read the config partition at {FLASH_OFFSET:#x}: {e:?}; idling"
            );
            Boot::Idle
        }
    }
}

/// The sector, read into this (never inlined) frame: 4 KB of stack once
/// at boot, gone before the engine runs, instead of 4 KB of RAM for good.
#[inline(never)]
fn read(
    flash: FLASH<'static>,
) -> Result<Result<DevConfig, devconfig::Error>, esp_storage::FlashStorageError> {
    let mut storage = FlashStorage::new(flash);
    let mut sector = [0xFF; PARTITION_SIZE];
    storage.read(FLASH_OFFSET, &mut sector)?;
    Ok(devconfig::parse(&sector))
}

/// The partition's fields over the build-time values.
fn merge(dev: &'static DevConfig, d: Config) -> Config {
    Config {
        ssid: dev.ssid.as_deref().unwrap_or(d.ssid),
        password: dev.password.as_deref().unwrap_or(d.password),
        mode: match dev.mode {
            Some(devconfig::Mode::Tcp) => Mode::Tcp,
            Some(devconfig::Mode::Udp) => Mode::Udp,
            None => d.mode,
        },
        role: match dev.role {
            Some(devconfig::Role::Connect(p)) => Role::Connect(p),
            Some(devconfig::Role::Listen(p)) => Role::Listen(p),
            None => d.role,
        },
        peer: dev.peer.unwrap_or(d.peer),
        udp_port: dev.udp_port.unwrap_or(d.udp_port),
        local_host: dev.local_host.unwrap_or(d.local_host),
        sntp_server: dev.sntp_server.unwrap_or(d.sntp_server),
    }
}
