// Minimal leveled logging to stderr (control thread and setup only; workers never log).
#pragma once

#include <string>

namespace dpsw {

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };
void set_log_level(LogLevel l);
bool parse_log_level(const std::string& s, LogLevel* out);
void logf(LogLevel l, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace dpsw

#define LOG_ERR(...) ::dpsw::logf(::dpsw::LogLevel::kError, __VA_ARGS__)
#define LOG_WARN(...) ::dpsw::logf(::dpsw::LogLevel::kWarn, __VA_ARGS__)
#define LOG_INFO(...) ::dpsw::logf(::dpsw::LogLevel::kInfo, __VA_ARGS__)
#define LOG_DEBUG(...) ::dpsw::logf(::dpsw::LogLevel::kDebug, __VA_ARGS__)
