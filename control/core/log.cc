#include "control/core/log.h"

#include <cstdarg>
#include <cstdio>
#include <ctime>

namespace dpsw {

static LogLevel g_level = LogLevel::kInfo;

void set_log_level(LogLevel l) { g_level = l; }

bool parse_log_level(const std::string& s, LogLevel* out) {
  if (s == "error") *out = LogLevel::kError;
  else if (s == "warn" || s == "warning") *out = LogLevel::kWarn;
  else if (s == "info") *out = LogLevel::kInfo;
  else if (s == "debug") *out = LogLevel::kDebug;
  else return false;
  return true;
}

void logf(LogLevel l, const char* fmt, ...) {
  if (l > g_level) return;
  static const char* names[] = {"error", "warn", "info", "debug"};
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t;
  localtime_r(&ts.tv_sec, &t);
  char prefix[64];
  strftime(prefix, sizeof prefix, "%H:%M:%S", &t);
  fprintf(stderr, "%s.%03ld dpsw %s: ", prefix, ts.tv_nsec / 1000000, names[int(l)]);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

}  // namespace dpsw
