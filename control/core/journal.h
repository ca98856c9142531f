// Crash-recovery journal: every namespace and link dpsw creates is recorded
// in <state_dir>/<instance>.state *before* it is created, and erased after
// an orderly teardown. A restart after kill -9 removes what the journal
// lists (and any link whose alias carries this instance's tag) first.
#pragma once

#include <cstdio>
#include <string>

namespace dpsw {

class Journal {
 public:
  // Takes the instance lock (<state_dir>/<instance>.lock); throws if another
  // live dpsw holds it. The lock dies with the process, even on kill -9.
  Journal(std::string state_dir, std::string instance);
  ~Journal();
  // Remove everything a previous run of this instance left behind; returns a count.
  int recover();
  void record(const std::string& kind, const std::string& name);  // "netns" | "link" | "tc-filter" | "tc-qdisc" (an interface's)
  // A socket file dpsw created: recover() removes that path only while it is
  // still this file (device and inode), never an application's socket there.
  void record_socket(const std::string& path);
  void clear();  // after a clean teardown
  std::string alias_tag() const { return "dpsw:" + instance_ + ":"; }
  const std::string& path() const { return path_; }

 private:
  std::string dir_, instance_, path_;
  FILE* f_ = nullptr;
  int lock_fd_ = -1;
};

}  // namespace dpsw
