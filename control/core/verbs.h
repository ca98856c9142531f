// The control socket's verbs: one table, name -> handler, that the Daemon
// builds once at startup from its own verbs (`show`, `reload`, `version`)
// and every control module's (Module::verbs()), and that every request is
// dispatched through.
//
// A verb is one word ("reload": the request's arguments are its arguments)
// or a command and a sub-verb ("network add": the first argument picks it,
// the rest are its arguments). A request's "cmd" is one word: "cmd":
// "network add" is an unknown command, as it always was. A name is registered once: a second
// registration of it, or a plain verb and a command with sub-verbs of the
// same word, is refused (std::logic_error) when the table is built. Errors a
// client sees are the same as ever: "unknown command 'x'", "network: expected
// add or del", "network add: needs a spec (...)", "network del: needs exactly
// one name".
//
// Control thread only.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/core/ctl_server.h"

namespace dpsw {

class VerbRegistry {
 public:
  // One request as its handler sees it.
  struct Request {
    const nlohmann::json& req;      // the whole request (as parsed by CtlServer)
    std::string verb;               // its name: "network add", "reload"
    std::vector<std::string> args;  // the arguments after the verb's words
    // The request's "spec" object as text (the same keys as in the config
    // file); ConfigError if there is none.
    std::string spec() const;
    // The one argument; ConfigError unless there is exactly one.
    const std::string& name() const;
  };
  using Handler = std::function<CtlReply(const Request&)>;

  // Throws std::logic_error when `name` is taken, or has more than two words.
  void add(const std::string& name, Handler h);
  // Checks the request's shape, finds its verb and runs it (its exceptions
  // pass through: CtlServer makes them the error reply).
  CtlReply dispatch(const nlohmann::json& req) const;

 private:
  std::map<std::string, Handler> verbs_;                  // by full name
  std::map<std::string, std::vector<std::string>> subs_;  // command -> its sub-verbs, in the order they were added
};

}  // namespace dpsw
