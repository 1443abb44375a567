// One thread beside the event loop for blocking work that may take a while: walking the whole
// LMDB cache, erasing dropped entries, writing the cdb and usage files. The event loop keeps
// answering lookups meanwhile; a coroutine awaits the result and resumes on its own executor.
#pragma once

#include <thread>
#include <type_traits>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "service/asio.hpp"

namespace mtasts::daemon {

class Worker {
 public:
  Worker() : guard_(asio::make_work_guard(context_)), thread_([this] { context_.run(); }) {}
  // The job in progress (if any) finishes; queued ones are dropped; then the thread is joined.
  ~Worker() {
    guard_.reset();
    context_.stop();
    thread_.join();
  }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Runs f() on the worker thread; jobs run one at a time, in order. f must not touch what the
  // event loop uses without a lock (the LMDB store is thread-safe; loggers are too).
  template <class F>
  asio::awaitable<std::invoke_result_t<F>> run(F f) {
    using Result = std::invoke_result_t<F>;
    // Named, not a temporary inside the co_await expression: g++ 12 destroys such temporaries
    // twice. The coroutine lambda takes the job as a parameter (kept in its frame) rather than
    // as a capture (kept in the closure, which co_spawn may move from).
    auto job = [](F work) -> asio::awaitable<Result> { co_return work(); };
    auto spawned = asio::co_spawn(context_.get_executor(), job(std::move(f)), asio::use_awaitable);
    co_return co_await std::move(spawned);
  }

 private:
  asio::io_context context_{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  std::thread thread_;
};

}  // namespace mtasts::daemon
