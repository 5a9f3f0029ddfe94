/*
 * ramboot's reference iPXE: v2.0.0 (the commit package/ipxe pins) with every
 * command the agent implements, so tests can compare the agent with real
 * iPXE on all of them. Included after iPXE's config/general.h
 * (src/config/local/general.h), so it also undoes the pcbios build's
 * "#undef"s (digests, ntp, params, certificates, console).
 */
#define DIGEST_CMD		/* md5sum, sha1sum, sha256sum ... */
#define IMAGE_TRUST_CMD		/* imgverify, imgtrust */
#define IMAGE_ARCHIVE_CMD	/* imgextract */
#define IMAGE_GZIP		/* ... of gzip */
#define IMAGE_ZLIB		/* ... and zlib images */
#define NSLOOKUP_CMD
#define PING_CMD
#define NTP_CMD
#define TIME_CMD
#define PARAM_CMD
#define CERT_CMD
#define CONSOLE_CMD
