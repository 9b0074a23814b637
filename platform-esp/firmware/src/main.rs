//! punchwire firmware for the ESP32-C3: joins Wi-Fi, gets an address by
//! DHCP, takes the time by SNTP and runs the punchwire engine through
//! `punchwire-esp` (the TCP punch and splice, or the UDP tunnel).
//!
//! One thread does everything by polling: the Wi-Fi driver's own tasks run
//! under esp-rtos, and this main thread sleeps between polls so they get
//! the CPU.

#![no_std]
#![no_main]

mod config;
mod devcfg;
mod device;
mod engine;
mod net;
mod ram;

use core::pin::pin;
use core::task::{Context, Poll, Waker};

use esp_backtrace as _;
use esp_hal::clock::CpuClock;
use esp_hal::main;
use esp_hal::rng::Rng;
use esp_hal::time::{Duration, Instant};
use esp_hal::timer::timg::TimerGroup;
use esp_println::println;
use esp_radio::wifi::sta::StationConfig;
use esp_radio::wifi::{
    AuthenticationMethodConfig, Config as WifiConfig, ControllerConfig, Interface, Password, Ssid,
    WifiController,
};
use punchwire_core::net::Wait;

use crate::config::{CONFIG, Config};
use crate::device::DriverDevice;
use crate::net::{DhcpChange, Lease, Net};

esp_bootloader_esp_idf::esp_app_desc!();

/// Heap in the RAM the second-stage bootloader used (`dram2_seg`, about
/// 64.8 KB on the C3); it is free once the app runs, so it costs nothing.
const HEAP_RECLAIMED: usize = 64 * 1024;
/// Heap in ordinary DRAM (.bss). Together with [`HEAP_RECLAIMED`] this is
/// the 100 KB esp-radio 1.0.0-beta.1 documents for Wi-Fi in its crate-level
/// quick start; the firmware logs the heap's high-water mark so this part
/// can be trimmed after a measurement on hardware. The engine itself never
/// allocates.
const HEAP_DRAM: usize = 36 * 1024;

/// How long one Wi-Fi association attempt may take.
const JOIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause between failed association attempts.
const JOIN_RETRY: Duration = Duration::from_secs(5);
/// Heap report interval while waiting for a lease.
const HEAP_REPORT: Duration = Duration::from_secs(600);

#[main]
fn main() -> ! {
    let peripherals = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));
    esp_alloc::heap_allocator!(#[esp_hal::ram(reclaimed)] size: HEAP_RECLAIMED);
    esp_alloc::heap_allocator!(size: HEAP_DRAM);

    // esp-radio needs the scheduler running before the controller exists.
    let timg0 = TimerGroup::new(peripherals.TIMG0);
    esp_rtos::start(timg0.timer0, peripherals.FROM_CPU_INTR0);

    println!("punchwire firmware {}", env!("CARGO_PKG_VERSION"));

    // The per-device partition over the build-time values. (It is read
    // at run time, so the compiler keeps everything below even in an
    // unconfigured CI build: the image's size and link are the real ones.)
    let cfg = match devcfg::load(peripherals.FLASH, CONFIG) {
        devcfg::Boot::Run(cfg) => cfg,
        devcfg::Boot::Idle => idle(),
    };
    if cfg.ssid.is_empty() {
        println!(
            "no Wi-Fi SSID: neither the config partition nor PW_WIFI_SSID at build time set one; not joining any network"
        );
        idle();
    }

    let mut wifi = WifiController::new(peripherals.WIFI, ControllerConfig::default())
        .expect("Wi-Fi controller init");
    match station_config(&cfg).map(|sc| wifi.set_config(&sc)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            println!("Wi-Fi: the driver refused the station config ({e:?}); idling");
            idle();
        }
        Err(what) => {
            println!("Wi-Fi: the driver refused the {what}; idling");
            idle();
        }
    }

    let device = DriverDevice::new(Interface::station());
    // The radio is on, so the hardware RNG is a true random source.
    let rng = Rng::new();
    let seed = (u64::from(rng.random()) << 32) | u64::from(rng.random());
    let (sockets, ram) = ram::take(
        cfg.mode,
        engine::endpoint_config(engine::local_of(cfg.role)),
        net::EspPlatform::now_instant(),
    );
    ram::log_sizes();
    let mut net = Net::new(device, sockets, seed);
    net.smol().seed_ephemeral(rng.random());
    if let Some(mac) = net.smol().device_mut().ethernet_address() {
        println!("station MAC {mac}");
    }

    engine::run(&cfg, &mut wifi, &mut net, rng, ram)
}

/// Sleeps for ever (an unusable configuration: nothing to do, nothing to
/// guess).
fn idle() -> ! {
    loop {
        sleep(Duration::from_secs(3600));
    }
}

/// Rejoins Wi-Fi if the link is down and waits for a DHCP lease, keeping
/// the interface polled.
fn online<D: embassy_net_driver::Driver>(
    wifi: &mut WifiController<'_>,
    net: &mut Net<D>,
    cfg: &Config,
) {
    let mut heap_report = Instant::now();
    loop {
        if !net.link_up() {
            println!("Wi-Fi link down");
            net.reset_dhcp();
            join(wifi, cfg);
        }
        match net.poll() {
            Some(DhcpChange::Configured(lease)) => log_lease(&lease),
            Some(DhcpChange::Deconfigured) => println!("DHCP: lease lost"),
            None => {}
        }
        if net.lease().is_some() {
            return;
        }
        // Until DHCP progresses, at most a second (then the link check).
        let smol = net.smol();
        let check = punchwire_core::time::add_millis(smol.now(), net::CHECK_EVERY_MS);
        let _ = smol.wait(Some(check));
        if heap_report.elapsed() >= HEAP_REPORT {
            log_heap();
            heap_report = Instant::now();
        }
    }
}

/// The station settings, or which value the driver refused (the
/// configuration may come from a partition: no panic on its content).
fn station_config(cfg: &Config) -> Result<WifiConfig, &'static str> {
    let ssid = Ssid::try_from(cfg.ssid).map_err(|_| "SSID")?;
    let auth = if cfg.password.is_empty() {
        AuthenticationMethodConfig::Open
    } else {
        AuthenticationMethodConfig::Wpa2Personal(
            Password::try_from(cfg.password).map_err(|_| "Wi-Fi password")?,
        )
    };
    Ok(WifiConfig::Station(
        StationConfig::default()
            .with_ssid(ssid)
            .with_authentication(auth),
    ))
}

/// Associates with the AP, retrying until it works.
fn join(wifi: &mut WifiController<'_>, cfg: &Config) {
    loop {
        println!("Wi-Fi: joining {:?}", cfg.ssid);
        match block_on_timeout(wifi.connect_async(), JOIN_TIMEOUT) {
            Some(Ok(info)) => {
                println!("Wi-Fi: joined, channel {}", info.channel);
                return;
            }
            Some(Err(e)) => println!("Wi-Fi: join failed: {e:?}"),
            None => println!("Wi-Fi: join timed out"),
        }
        sleep(JOIN_RETRY);
    }
}

pub(crate) fn log_lease(lease: &Lease) {
    println!("DHCP: address {}", lease.address);
    match lease.router {
        Some(r) => println!("DHCP: gateway {r}"),
        None => println!("DHCP: no gateway"),
    }
    for dns in lease.dns.iter().flatten() {
        println!("DHCP: DNS {dns}");
    }
}

pub(crate) fn log_heap() {
    let stats = esp_alloc::HEAP.stats();
    println!(
        "heap: {} of {} bytes in use, high-water mark {}",
        stats.current_usage, stats.size, stats.max_usage
    );
}

/// Puts this thread to sleep so the scheduler runs the Wi-Fi tasks.
pub(crate) fn sleep(d: Duration) {
    esp_rtos::CurrentThreadHandle::get().delay(d);
}

/// Polls `fut` until it completes or `timeout` passes (then drops it).
/// The waker is a no-op: the future is simply polled again after a short
/// sleep, like the network.
fn block_on_timeout<F: Future>(fut: F, timeout: Duration) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    let start = Instant::now();
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
        if start.elapsed() >= timeout {
            return None;
        }
        sleep(Duration::from_millis(10));
    }
}
