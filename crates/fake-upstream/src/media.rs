//! Small, deterministic, structurally valid media files: the audio that
//! `/v1/audio/speech` returns and the PNG that `/v1/images/generations` returns.
//!
//! Every generator is pure: the same arguments give the same bytes.

/// Sample rate of OpenAI's speech output (and of `pcm`).
pub(crate) const SAMPLE_RATE: u32 = 24_000;

/// The audio formats of `/v1/audio/speech`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AudioFormat {
    Mp3,
    Opus,
    Aac,
    Flac,
    Wav,
    Pcm,
}

impl AudioFormat {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "mp3" => Self::Mp3,
            "opus" => Self::Opus,
            "aac" => Self::Aac,
            "flac" => Self::Flac,
            "wav" => Self::Wav,
            "pcm" => Self::Pcm,
            _ => return None,
        })
    }

    /// The `content-type` OpenAI sends for the format.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Self::Mp3 => "audio/mpeg",
            Self::Opus => "audio/opus",
            Self::Aac => "audio/aac",
            Self::Flac => "audio/flac",
            Self::Wav => "audio/wav",
            Self::Pcm => "audio/pcm",
        }
    }

    /// `samples` of 24 kHz mono audio in this format.
    pub(crate) fn encode(self, samples: &[i16]) -> Vec<u8> {
        match self {
            Self::Mp3 => mp3_silence(samples.len()),
            Self::Opus => ogg_opus_silence(samples.len()),
            Self::Aac => adts_silence(samples.len()),
            Self::Flac => flac(samples),
            Self::Wav => wav(samples),
            Self::Pcm => pcm(samples),
        }
    }
}

/// A sine tone of `ms` milliseconds at `hz`, 24 kHz, 16-bit, with short fades.
pub(crate) fn tone(ms: u32, hz: u32) -> Vec<i16> {
    let n = (SAMPLE_RATE / 1000 * ms) as usize;
    let fade = (SAMPLE_RATE / 100) as usize; // 10 ms
    let step = std::f64::consts::TAU * f64::from(hz) / f64::from(SAMPLE_RATE);
    (0..n)
        .map(|i| {
            let edge = i.min(n - 1 - i).min(fade) as f64 / fade as f64;
            let x = (step * i as f64).sin() * 0.3 * edge * f64::from(i16::MAX);
            x.round() as i16
        })
        .collect()
}

fn pcm(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// A canonical 44-byte-header RIFF/WAVE file, 24 kHz 16-bit mono PCM.
pub(crate) fn wav(samples: &[i16]) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&SAMPLE_RATE.to_le_bytes());
    out.extend_from_slice(&(SAMPLE_RATE * 2).to_le_bytes()); // byte rate
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out.extend_from_slice(&pcm(samples));
    out
}

/// Duration in seconds of a RIFF/WAVE file, from its `fmt ` byte rate and `data` size.
pub(crate) fn wav_duration(bytes: &[u8]) -> Option<f64> {
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return None;
    }
    let mut pos = 12;
    let mut byte_rate = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().ok()?) as usize;
        let body = pos + 8;
        if id == b"fmt " && body + 12 <= bytes.len() {
            byte_rate = Some(u32::from_le_bytes(
                bytes[body + 8..body + 12].try_into().ok()?,
            ));
        } else if id == b"data" {
            let rate = byte_rate.filter(|r| *r > 0)?;
            let len = len.min(bytes.len() - body);
            return Some(len as f64 / f64::from(rate));
        }
        pos = body.checked_add(len)?.checked_add(len & 1)?;
    }
    None
}

/// An ID3v2.4 tag followed by silent MPEG-1 Layer III frames (44.1 kHz,
/// 128 kbit/s, mono, no CRC: `FF FB 90 C4`), as long as `samples` at 24 kHz.
fn mp3_silence(samples: usize) -> Vec<u8> {
    const FRAME_LEN: usize = 417; // 144 * 128000 / 44100
    const SOFTWARE: &[u8] = b"fake-upstream";
    let seconds = samples as f64 / f64::from(SAMPLE_RATE);
    let frames = ((seconds * 44_100.0 / 1152.0).ceil() as usize).max(1);
    let mut out = Vec::with_capacity(34 + frames * FRAME_LEN);
    // ID3v2.4 header with one TSSE (encoder) text frame.
    let frame_size = 1 + SOFTWARE.len();
    let tag_size = 10 + frame_size;
    out.extend_from_slice(b"ID3\x04\x00\x00");
    out.extend_from_slice(&syncsafe(tag_size));
    out.extend_from_slice(b"TSSE");
    out.extend_from_slice(&syncsafe(frame_size));
    out.extend_from_slice(&[0, 0, 3]); // flags, UTF-8
    out.extend_from_slice(SOFTWARE);
    for _ in 0..frames {
        out.extend_from_slice(&[0xFF, 0xFB, 0x90, 0xC4]);
        // Zero side info and main data: no granule data, i.e. silence.
        out.resize(out.len() + FRAME_LEN - 4, 0);
    }
    out
}

fn syncsafe(n: usize) -> [u8; 4] {
    [
        ((n >> 21) & 0x7F) as u8,
        ((n >> 14) & 0x7F) as u8,
        ((n >> 7) & 0x7F) as u8,
        (n & 0x7F) as u8,
    ]
}

/// ADTS AAC-LC frames (24 kHz mono, 1024 samples each) of digital silence.
fn adts_silence(samples: usize) -> Vec<u8> {
    // SCE, global_gain 160, long window, max_sfb 0, then END.
    const SILENT_BLOCK: [u8; 4] = [0x01, 0x40, 0x20, 0x07];
    const SAMPLING_INDEX: u8 = 6; // 24 kHz
    const CHANNELS: u8 = 1;
    let frames = samples.div_ceil(1024).max(1);
    let len = 7 + SILENT_BLOCK.len(); // < 2^11, fits the 13-bit field
    let header = [
        0xFF,
        0xF1,                                               // MPEG-4, layer 0, no CRC
        (1 << 6) | (SAMPLING_INDEX << 2) | (CHANNELS >> 2), // profile LC
        ((CHANNELS & 3) << 6) | ((len >> 11) as u8 & 0x03),
        ((len >> 3) & 0xFF) as u8,
        (((len & 7) as u8) << 5) | 0x1F, // buffer fullness 0x7FF (VBR)
        0xFC,                            // ... and one raw data block
    ];
    let mut out = Vec::with_capacity(frames * len);
    for _ in 0..frames {
        out.extend_from_slice(&header);
        out.extend_from_slice(&SILENT_BLOCK);
    }
    out
}

/// An Ogg Opus file (`OpusHead`, `OpusTags`, then 20 ms silent CELT packets).
fn ogg_opus_silence(samples: usize) -> Vec<u8> {
    const SERIAL: u32 = 0x6661_6B65; // "fake"
    const PRE_SKIP: u16 = 312;
    const SILENT_PACKET: [u8; 3] = [0xF8, 0xFF, 0xFE]; // CELT FB 20 ms, mono
    const PACKETS_PER_PAGE: usize = 50; // one second
    let packets = samples.div_ceil(SAMPLE_RATE as usize / 50).max(1);

    let mut head = Vec::with_capacity(19);
    head.extend_from_slice(b"OpusHead\x01\x01");
    head.extend_from_slice(&PRE_SKIP.to_le_bytes());
    head.extend_from_slice(&SAMPLE_RATE.to_le_bytes());
    head.extend_from_slice(&[0, 0, 0]); // output gain, mapping family 0
    let vendor = b"fake-upstream";
    let mut tags = Vec::with_capacity(24 + vendor.len());
    tags.extend_from_slice(b"OpusTags");
    tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    tags.extend_from_slice(vendor);
    tags.extend_from_slice(&0u32.to_le_bytes());

    let mut out = Vec::new();
    let mut seq = 0u32;
    ogg_page(&mut out, 0x02, 0, SERIAL, &mut seq, &[&head]);
    ogg_page(&mut out, 0x00, 0, SERIAL, &mut seq, &[&tags]);
    let mut done = 0usize;
    while done < packets {
        let n = PACKETS_PER_PAGE.min(packets - done);
        done += n;
        let granule = u64::from(PRE_SKIP) + done as u64 * 960;
        let flags = if done == packets { 0x04 } else { 0x00 };
        let page: Vec<&[u8]> = vec![&SILENT_PACKET; n];
        ogg_page(&mut out, flags, granule, SERIAL, &mut seq, &page);
    }
    out
}

/// Appends one Ogg page holding whole `packets` (each < 255 bytes or laced).
fn ogg_page(
    out: &mut Vec<u8>,
    flags: u8,
    granule: u64,
    serial: u32,
    seq: &mut u32,
    packets: &[&[u8]],
) {
    let start = out.len();
    let mut lacing = Vec::new();
    for p in packets {
        lacing.extend(std::iter::repeat_n(255u8, p.len() / 255));
        lacing.push((p.len() % 255) as u8);
    }
    out.extend_from_slice(b"OggS\x00");
    out.push(flags);
    out.extend_from_slice(&granule.to_le_bytes());
    out.extend_from_slice(&serial.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // CRC, filled below
    out.push(lacing.len() as u8);
    out.extend_from_slice(&lacing);
    for p in packets {
        out.extend_from_slice(p);
    }
    let crc = ogg_crc(&out[start..]);
    out[start + 22..start + 26].copy_from_slice(&crc.to_le_bytes());
    *seq += 1;
}

/// Ogg's CRC-32: polynomial 0x04C11DB7, MSB first, no reflection, no final xor.
fn ogg_crc(bytes: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &b in bytes {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A FLAC file: `fLaC`, STREAMINFO, then fixed-size frames of verbatim 16-bit mono subframes.
fn flac(samples: &[i16]) -> Vec<u8> {
    const BLOCK: usize = 4096;
    let mut out = Vec::with_capacity(42 + samples.len() * 2 + samples.len() / BLOCK * 16 + 16);
    out.extend_from_slice(b"fLaC");
    out.extend_from_slice(&[0x80, 0, 0, 34]); // last metadata block, STREAMINFO, 34 bytes
    out.extend_from_slice(&(BLOCK as u16).to_be_bytes()); // min block size
    out.extend_from_slice(&(BLOCK as u16).to_be_bytes()); // max block size
    out.extend_from_slice(&[0; 6]); // min/max frame size unknown
    // Sample rate (20 bits), channels - 1 (3 bits, 0), bits per sample - 1 (5 bits).
    let packed: u64 =
        (u64::from(SAMPLE_RATE) << 44) | (15u64 << 36) | (samples.len() as u64 & 0xF_FFFF_FFFF);
    out.extend_from_slice(&packed.to_be_bytes());
    out.extend_from_slice(&[0; 16]); // MD5 unknown

    for (number, block) in samples.chunks(BLOCK).enumerate() {
        let start = out.len();
        out.extend_from_slice(&[0xFF, 0xF8]); // sync, fixed block size
        out.push(0x77); // block size: 16-bit at end of header; 24 kHz
        out.push(0x08); // mono, 16 bits per sample
        push_utf8_number(&mut out, number as u32);
        out.extend_from_slice(&((block.len() - 1) as u16).to_be_bytes());
        out.push(crc8(&out[start..]));
        out.push(0x02); // verbatim subframe, no wasted bits
        for s in block {
            out.extend_from_slice(&s.to_be_bytes());
        }
        let crc = crc16(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    out
}

/// FLAC's "UTF-8" coding of a frame number (up to 31 bits).
fn push_utf8_number(out: &mut Vec<u8>, n: u32) {
    if n < 0x80 {
        out.push(n as u8);
        return;
    }
    let extra = match n {
        0..0x800 => 1,
        0x800..0x1_0000 => 2,
        0x1_0000..0x20_0000 => 3,
        0x20_0000..0x400_0000 => 4,
        _ => 5,
    };
    let lead_mask: u8 = !(0xFFu8 >> (extra + 1));
    out.push(lead_mask | (n >> (6 * extra)) as u8);
    for i in (0..extra).rev() {
        out.push(0x80 | ((n >> (6 * i)) & 0x3F) as u8);
    }
}

/// CRC-8, polynomial 0x07, init 0 (FLAC frame headers).
fn crc8(bytes: &[u8]) -> u8 {
    let mut crc = 0u8;
    for &b in bytes {
        crc ^= b;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x07
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// CRC-16, polynomial 0x8005, init 0 (FLAC frames).
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = 0u16;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x8005
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A `size`x`size` RGB PNG of one colour (zlib with stored deflate blocks).
pub(crate) fn png(size: u32, rgb: [u8; 3]) -> Vec<u8> {
    let row_len = 1 + size as usize * 3;
    let mut row = Vec::with_capacity(row_len);
    row.push(0); // filter: none
    for _ in 0..size {
        row.extend_from_slice(&rgb);
    }
    let raw = row.repeat(size as usize);
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(0xFFFF).collect();
    for (i, block) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len())); // BFINAL, BTYPE=00
        let len = block.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(block);
    }
    z.extend_from_slice(&adler32(&raw).to_be_bytes());

    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&size.to_be_bytes());
    ihdr.extend_from_slice(&size.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace

    let mut out = Vec::with_capacity(z.len() + 64);
    out.extend_from_slice(b"\x89PNG\r\n\x1a\n");
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IDAT", &z);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// The CRC-32 of zlib/PNG (reflected 0xEDB88320).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in bytes {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crcs_match_reference_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc8(b"123456789"), 0xF4);
        assert_eq!(crc16(b"123456789"), 0xFEE8); // CRC-16/UMTS (a.k.a. BUYPASS)
        assert_eq!(ogg_crc(b"123456789"), 0x89A1_897F); // CRC-32/MPEG-2 without init/xorout
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }

    #[test]
    fn wav_header_and_duration() {
        let s = tone(500, 440);
        assert_eq!(s.len(), 12_000);
        let w = wav(&s);
        assert_eq!(&w[..4], b"RIFF");
        assert_eq!(&w[8..16], b"WAVEfmt ");
        assert_eq!(w.len(), 44 + 24_000);
        assert_eq!(u32::from_le_bytes(w[4..8].try_into().unwrap()), 36 + 24_000);
        assert_eq!(wav_duration(&w), Some(0.5));
        assert_eq!(wav_duration(b"RIFF....WAVE"), None);
        assert_eq!(wav_duration(b"not a wav"), None);
        assert!(s.iter().any(|x| *x > 9_000) && s[0] == 0);
    }

    #[test]
    fn magic_bytes() {
        let s = tone(300, 440);
        let starts = |f: AudioFormat, magic: &[u8]| {
            let b = f.encode(&s);
            assert!(b.starts_with(magic), "{f:?}: {:02x?}", &b[..8]);
            assert_eq!(b, f.encode(&s), "{f:?} is deterministic");
        };
        starts(AudioFormat::Mp3, b"ID3");
        starts(AudioFormat::Flac, b"fLaC");
        starts(AudioFormat::Opus, b"OggS");
        starts(AudioFormat::Aac, &[0xFF, 0xF1]);
        starts(AudioFormat::Wav, b"RIFF");
        assert_eq!(AudioFormat::Pcm.encode(&s).len(), s.len() * 2);
        assert!(png(4, [1, 2, 3]).starts_with(b"\x89PNG\r\n\x1a\n"));
    }

    #[test]
    fn flac_frame_numbers() {
        let mut v = Vec::new();
        push_utf8_number(&mut v, 0x7F);
        push_utf8_number(&mut v, 0x80);
        push_utf8_number(&mut v, 0x800);
        assert_eq!(v, [0x7F, 0xC2, 0x80, 0xE0, 0xA0, 0x80]);
    }
}
