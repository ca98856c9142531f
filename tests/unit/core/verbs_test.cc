// The control verb table (control/core/verbs.h): a name is registered once
// (a repeat is refused when the table is built, at startup), requests reach
// their verb with the arguments after its words, and a client sees the same
// errors as before the table existed.
#include "control/core/verbs.h"

#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "control/core/config.h"

namespace dpsw {
namespace {

using nlohmann::json;

// The error text of dispatching `req` ("" when it succeeds).
std::string error_of(const VerbRegistry& v, const json& req) {
  try {
    v.dispatch(req);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// The daemon's table in miniature: plain verbs and a command with sub-verbs;
// each answers with what it was given.
VerbRegistry table() {
  VerbRegistry v;
  auto echo = [](const VerbRegistry::Request& r) { return CtlReply(json{{"verb", r.verb}, {"args", r.args}}); };
  v.add("show", echo);
  v.add("reload", echo);
  v.add("network add", [](const VerbRegistry::Request& r) { return CtlReply(json{{"spec", r.spec()}}); });
  v.add("network del", [](const VerbRegistry::Request& r) { return CtlReply(json{{"name", r.name()}}); });
  return v;
}

TEST(Verbs, DuplicateNameRefused) {
  VerbRegistry v = table();
  auto noop = [](const VerbRegistry::Request&) { return CtlReply(); };
  EXPECT_THROW(v.add("show", noop), std::logic_error);
  EXPECT_THROW(v.add("network add", noop), std::logic_error);
  EXPECT_THROW(v.add("network", noop), std::logic_error);      // a command with sub-verbs
  EXPECT_THROW(v.add("reload now", noop), std::logic_error);   // a plain verb
  EXPECT_THROW(v.add("a b c", noop), std::logic_error);        // more than two words
  EXPECT_THROW(v.add("", noop), std::logic_error);
  EXPECT_NO_THROW(v.add("network set", noop));                 // a new sub-verb of a known command
}

TEST(Verbs, UnknownVerbSameErrorAsEver) {
  const VerbRegistry v = table();
  EXPECT_EQ(error_of(v, {{"v", 1}, {"cmd", "frobnicate"}}), "unknown command 'frobnicate'");
  EXPECT_EQ(error_of(v, {{"v", 1}, {"cmd", "frobnicate"}, {"args", {"add"}}}), "unknown command 'frobnicate'");
  // A command and its sub-verb in "cmd" name no verb: the sub-verb is the first argument.
  EXPECT_EQ(error_of(v, {{"v", 1}, {"cmd", "network del"}, {"args", {"n"}}}), "unknown command 'network del'");
  EXPECT_EQ(error_of(v, {{"v", 1}, {"cmd", "network add"}, {"spec", {{"name", "n"}}}}), "unknown command 'network add'");
  EXPECT_EQ(error_of(v, {{"v", 1}, {"cmd", "network "}, {"args", {"del", "n"}}}), "unknown command 'network '");
  EXPECT_EQ(error_of(v, {{"v", 1}, {"cmd", "show "}}), "unknown command 'show '");
  EXPECT_EQ(error_of(v, {{"v", 1}, {"cmd", ""}}), "unknown command ''");
  EXPECT_EQ(error_of(v, {{"v", 1}, {"cmd", "network"}, {"args", {"frobnicate"}}}), "network: expected add or del");
  EXPECT_EQ(error_of(v, {{"v", 1}, {"cmd", "network"}}), "network: expected add or del");
  EXPECT_EQ(error_of(v, {{"v", 1}, {"cmd", 7}}), "request: \"cmd\" must be a string (e.g. \"show\")");
  EXPECT_EQ(error_of(v, {{"v", 1}, {"cmd", "show"}, {"args", {1}}}), "request: \"args\" must be a list of strings");
  EXPECT_EQ(error_of(v, {{"v", 1}, {"cmd", "network"}, {"args", {"add"}}}),
            "network add: needs a spec (the same keys as in the config file)");
  EXPECT_EQ(error_of(v, {{"v", 1}, {"cmd", "network"}, {"args", {"del"}}}), "network del: needs exactly one name");
  EXPECT_EQ(error_of(v, {{"v", 1}, {"cmd", "network"}, {"args", {"del", "a", "b"}}}), "network del: needs exactly one name");
  try {
    v.dispatch({{"cmd", "network"}, {"args", {"add"}}});
  } catch (const ConfigError&) {  // the same type as before: a refused change
  } catch (...) {
    ADD_FAILURE() << "a missing spec is not a ConfigError";
  }
}

TEST(Verbs, ThreeSubVerbsListed) {
  VerbRegistry v = table();
  v.add("network set", [](const VerbRegistry::Request&) { return CtlReply(); });
  EXPECT_EQ(error_of(v, {{"cmd", "network"}}), "network: expected add, del or set");
}

TEST(Verbs, Dispatch) {
  const VerbRegistry v = table();
  EXPECT_EQ(v.dispatch({{"v", 1}, {"cmd", "show"}, {"args", {"mac", "a"}}}).result,
            (json{{"verb", "show"}, {"args", {"mac", "a"}}}));
  EXPECT_EQ(v.dispatch({{"v", 1}, {"cmd", "reload"}}).result, (json{{"verb", "reload"}, {"args", json::array()}}));
  EXPECT_EQ(v.dispatch({{"cmd", "network"}, {"args", {"add"}}, {"spec", {{"name", "n"}}}}).result, (json{{"spec", "{\"name\":\"n\"}"}}));
  EXPECT_EQ(v.dispatch({{"cmd", "network"}, {"args", {"del", "n"}}}).result, (json{{"name", "n"}}));
}

}  // namespace
}  // namespace dpsw
