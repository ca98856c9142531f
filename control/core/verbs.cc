// The control socket's verb table (verbs.h).
#include "control/core/verbs.h"

#include <algorithm>
#include <stdexcept>

#include "control/core/config.h"

namespace dpsw {

using nlohmann::json;

std::string VerbRegistry::Request::spec() const {
  if (!req.contains("spec") || !req["spec"].is_object()) throw ConfigError(verb + ": needs a spec (the same keys as in the config file)");
  return req["spec"].dump();
}

const std::string& VerbRegistry::Request::name() const {
  if (args.size() != 1) throw ConfigError(verb + ": needs exactly one name");
  return args[0];
}

void VerbRegistry::add(const std::string& name, Handler h) {
  const size_t space = name.find(' ');
  const std::string cmd = name.substr(0, space);
  if (name.empty() || (space != std::string::npos && name.find(' ', space + 1) != std::string::npos))
    throw std::logic_error("control verb '" + name + "': a verb is one word or a command and a sub-verb");
  const bool taken = verbs_.count(name) || (space == std::string::npos ? subs_.count(cmd) > 0 : verbs_.count(cmd) > 0);
  if (taken) throw std::logic_error("control verb '" + name + "' is registered twice");
  verbs_[name] = std::move(h);
  if (space != std::string::npos) subs_[cmd].push_back(name.substr(space + 1));
}

CtlReply VerbRegistry::dispatch(const json& req) const {
  // The request was parsed from the client's line (bounded in size and depth by CtlServer): check its shape first.
  if (!req.contains("cmd") || !req["cmd"].is_string()) throw std::runtime_error("request: \"cmd\" must be a string (e.g. \"show\")");
  const json no_args = json::array();
  const json& jargs = req.contains("args") ? req["args"] : no_args;
  if (!jargs.is_array() || !std::all_of(jargs.begin(), jargs.end(), [](const json& a) { return a.is_string(); }))
    throw std::runtime_error("request: \"args\" must be a list of strings");
  const std::string cmd = req["cmd"].get<std::string>();
  const std::runtime_error unknown("unknown command '" + cmd + "'");
  // "cmd" is one word: "network add" names no verb (the sub-verb is the first argument), as ever.
  if (cmd.find(' ') != std::string::npos) throw unknown;
  Request r{req, cmd, jargs.get<std::vector<std::string>>()};
  if (auto sub = subs_.find(cmd); sub != subs_.end()) {  // a command: its first argument is the sub-verb
    if (r.args.empty() || !verbs_.count(cmd + " " + r.args[0])) {
      std::string expected;
      for (size_t i = 0; i < sub->second.size(); i++)
        expected += (i == 0 ? "" : i + 1 == sub->second.size() ? " or " : ", ") + sub->second[i];
      throw std::runtime_error(cmd + ": expected " + expected);
    }
    r.verb += " " + r.args[0];
    r.args.erase(r.args.begin());
  }
  auto it = verbs_.find(r.verb);
  if (it == verbs_.end()) throw unknown;
  return it->second(r);
}

}  // namespace dpsw
