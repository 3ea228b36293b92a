#pragma once
// The one place that decides who prints: with several ranks only rank 0 logs info and
// progress, every rank logs errors.
#include <string>

namespace tltrain::log {

enum class Level { Quiet, Normal, Verbose };

void init(Level level);
/// Ranks other than 0 print errors only.
void set_rank(int rank);
bool is_output_rank();

void debug(const std::string& msg);
void info(const std::string& msg);
void warn(const std::string& msg);
void error(const std::string& msg);

/// V with DECIMALS fixed decimals, as log lines and reports print figures ("0.9412").
std::string fixed(double v, int decimals = 4);
/// V with at most DIGITS significant digits, as printf's %g writes it: rates and other figures
/// whose scale varies ("0.0003", "1e-06").
std::string general(double v, int digits = 6);

}  // namespace tltrain::log
