// Shipping a model: export (parity with the checkpoint and with Python's torch.jit.load),
// predict (parity with eval, error rows for bad files) and serve (real HTTP on an ephemeral port:
// good, corrupt, empty, oversized and huge uploads, wrong methods, 32 concurrent clients); ONNX
// export run by OpenCV DNN against the TorchScript logits, its metadata and refusals, and the
// ONNX file through predict and serve, and through ONNX Runtime.
#include <gtest/gtest.h>
#include <httplib.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "test_util.h"
#include "tltrain/core/error.h"
#include "tltrain/core/fs.h"
#include "tltrain/core/npy.h"
#include "tltrain/data/dataset.h"
#include "tltrain/data/loader.h"
#include "tltrain/model/inference.h"
#include "tltrain/serve/server.h"
#include "tltrain/ship/export.h"
#include "tltrain/ship/onnx.h"
#include "tltrain/checkpoint/model_file.h"
#include "tltrain/ship/predict.h"
#include "tltrain/checkpoint/checkpoint.h"
#include "tltrain/train/trainer.h"

namespace fs = std::filesystem;
using namespace tltrain;
using config::json;

namespace {

/// One trained run on coloured squares (three classes, a gelu hidden layer, avgmax pooling, so
/// the exported head script covers more than the default), exported once per process.
struct Shipped {
  test::TempDir dir{"ship"};
  std::string checkpoint, model;
  std::vector<std::string> classes{"blue", "green", "red"};
  Shipped() {
    test::write_color_dataset(dir / "train", classes, 8);
    test::write_color_dataset(dir / "val", classes, 4);
    json cfg = {{"seed", 5},
                {"device", "cpu"},
                {"threads", {{"intra_op", 1}, {"loader", 2}}},
                {"data", {{"train", dir / "train"}, {"val", dir / "val"}, {"batch_size", 8}}},
                {"model", {{"backbone", test::tiny_backbone()},
                           {"head", {{"hidden", {8}}, {"activation", "gelu"}, {"pooling", "avgmax"}, {"dropout", 0.2}}}}},
                {"output_dir", dir / "run"},
                {"stages", json::array({{{"name", "all"}, {"epochs", 2}, {"trainable", "all"},
                                         {"optimizer", {{"name", "adam"}, {"lr", 0.01}}}}})}};
    auto r = train::fit(config::parse_run_config(cfg, "ship_test.json"));
    checkpoint = r.best_checkpoint;
    model = dir / "model.pt";
    ship::export_model({checkpoint, model});
  }
};

const Shipped& shipped() {
  static Shipped s;
  return s;
}

/// The eval path: checkpoint → classifier → Loader in Eval mode over the val folder.
model::Predictions eval_predictions(const std::string& checkpoint, const std::string& val) {
  auto ck = checkpoint::load(checkpoint);
  auto cfg = config::parse_run_config(ck.info.at("config"), "ckpt");
  auto m = checkpoint::classifier_from(ck, torch::kCPU);
  auto ds = data::scan_source(val);
  data::LoaderOptions lo;
  lo.batch_size = 64;
  lo.threads = 2;
  data::Loader loader(ds.samples, data::resolve_preprocess(cfg.data, m.meta().image_spec()), cfg.data.augment, data::Mode::Eval, lo);
  return model::predict(m, loader, 8);
}

/// `tltrain export --checkpoint CK --out OUT ARGS` with SCRIPTS/NAME a stand-in that writes TEXT at
/// its --out and prints the summary SUMMARY, after a user's earlier file is put at OUT.
test::CommandResult export_with_stand_in(const test::TempDir& scripts, const std::string& name, const std::string& text,
                                         const std::string& summary, const std::string& ck, const std::string& out,
                                         const std::string& args) {
  test::write_text(scripts / name, "import json, sys\nout = sys.argv[sys.argv.index('--out') + 1]\nopen(out, 'w').write('" + text +
                                       "')\nprint(json.dumps(" + summary + "))\n");
  test::write_text(out, "the user's earlier export");  // what a failed export must leave as it was
  return test::run_command("TLTRAIN_SCRIPTS_DIR=" + scripts.path() + " " + std::string(TLTRAIN_BIN) + " export --checkpoint " + ck +
                           " --out " + out + " " + args);
}

/// The files beside OUT that an export made on the way (its name with a prefix or a suffix).
std::vector<std::string> intermediates_of(const std::string& out) {
  std::vector<std::string> left;
  const std::string name = fs::path(out).filename().string();
  for (const auto& e : fs::directory_iterator(fs::path(out).parent_path())) {
    const std::string f = e.path().filename().string();
    if (f != name && f.find(name) != std::string::npos) left.push_back(f);
  }
  return left;
}

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

}  // namespace

TEST(ShipExport, ModelFileComputesTheCheckpointsLogitsInCppAndPython) {
  const auto& s = shipped();
  auto mf = checkpoint::load_model_file(s.model);
  EXPECT_EQ(mf.info.classes, s.classes);
  EXPECT_EQ(mf.info.preprocess.height, 32);
  EXPECT_EQ(mf.info.arch, "tiny");

  // The batch eval sees (not random noise): the val images through the eval loader.
  auto ck = checkpoint::load(s.checkpoint);
  auto cfg = config::parse_run_config(ck.info.at("config"), "ckpt");
  auto m = checkpoint::classifier_from(ck, torch::kCPU);
  m.set_training(false, config::BatchNormPolicy::Frozen);
  auto ds = data::scan_source(s.dir / "val");
  data::LoaderOptions lo;
  lo.batch_size = 64;
  data::Loader loader(ds.samples, data::resolve_preprocess(cfg.data, m.meta().image_spec()), cfg.data.augment, data::Mode::Eval, lo);
  loader.start_epoch(0);
  auto batch = loader.next();
  ASSERT_TRUE(batch);
  torch::NoGradGuard ng;
  auto expected = m.forward(batch->images);
  auto cpp = mf.module.forward({batch->images}).toTensor();
  EXPECT_LE((cpp - expected).abs().max().item<double>(), 1e-5);
  auto proba = mf.module.get_method("predict_proba")({batch->images}).toTensor();
  EXPECT_LE((proba - torch::softmax(expected, 1)).abs().max().item<double>(), 1e-6);

  if (!fs::exists("/usr/bin/python3")) GTEST_SKIP() << "/usr/bin/python3 missing: Python parity not checked";
  auto x = batch->images.contiguous();
  {
    std::ofstream f(s.dir / "batch.bin", std::ios::binary);
    f.write(static_cast<const char*>(x.data_ptr()), static_cast<std::streamsize>(x.numel() * 4));
  }
  auto r = test::run_command("/usr/bin/python3 " + std::string(TLTRAIN_SOURCE_DIR) + "/tests/python/run_exported.py " + s.model + " " +
                             (s.dir / "batch.bin") + " " + std::to_string(x.size(0)) + " 3 32 32 " + (s.dir / "py.bin"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto py_bytes = read_bytes(s.dir / "py.bin");
  ASSERT_EQ(py_bytes.size(), static_cast<size_t>(expected.numel() * 4));
  auto py = torch::from_blob(py_bytes.data(), expected.sizes(), torch::kFloat32).clone();
  EXPECT_LE((py - expected).abs().max().item<double>(), 1e-4);
  auto out = json::parse(r.output.substr(r.output.find('{')));
  EXPECT_EQ(out.at("classes"), json(s.classes));
  EXPECT_EQ(out.at("meta_classes"), json(s.classes));
  EXPECT_EQ(out.at("input_size"), json({32, 32}));
  EXPECT_EQ(out.at("training"), false);
}

TEST(ShipExport, EveryPoolingAndActivationExportsExactly) {
  const auto& s = shipped();
  test::TempDir d("heads");
  auto ck = checkpoint::load(s.checkpoint);
  const std::vector<std::pair<std::string, std::string>> heads{{"avg", "relu"}, {"max", "silu"}, {"avgmax", "tanh"}, {"avg", "gelu"}};
  for (const auto& [pooling, activation] : heads) {
    json info = ck.info;
    info["config"]["model"]["head"] = {{"pooling", pooling}, {"hidden", {6, 5}}, {"activation", activation}, {"dropout", 0.5}};
    auto head = config::parse_run_config(info["config"], "heads").model.head;
    torch::manual_seed(1);
    model::Classifier m(model::load_backbone(test::tiny_backbone()), head, 3, torch::kCPU);
    checkpoint::save(d / "ck.pt", m, nullptr, info);
    auto summary = ship::export_model({d / "ck.pt", d / "model.pt"});
    EXPECT_LE(summary.check_max_abs_diff, 1e-5) << pooling << " " << activation;
    EXPECT_EQ(summary.metadata.at("head").at("activation"), activation);
  }
}

TEST(ShipExport, ModelLoaderRefusesBackbonesAndCheckpointsWithTheFix) {
  const auto& s = shipped();
  try {
    checkpoint::load_model_file(test::tiny_backbone());
    FAIL() << "a backbone loaded as a model";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data);
    EXPECT_NE(std::string(e.what()).find("is a backbone"), std::string::npos) << e.what();
  }
  try {
    checkpoint::load_model_file(s.checkpoint);
    FAIL() << "a checkpoint loaded as a model";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data);
    EXPECT_NE(std::string(e.what()).find("tltrain export --checkpoint"), std::string::npos) << e.what();
  }
  auto r = test::run_tltrain("predict --model " + test::tiny_backbone() + " " + (s.dir / "val"));
  EXPECT_EQ(r.exit_code, exit_code::data) << r.output;
}

/// Every val image of the shipped run through the eval loader as MF preprocesses it, in one batch.
torch::Tensor val_batch(const checkpoint::ModelFile& mf) {
  auto ds = data::scan_source(shipped().dir / "val");
  data::LoaderOptions lo;
  lo.batch_size = 64;
  data::Loader loader(ds.samples, mf.info.preprocess, {}, data::Mode::Eval, lo);
  loader.start_epoch(0);
  auto batch = loader.next();
  return batch ? batch->images.contiguous() : torch::Tensor(torch::zeros({0}));
}

bool python_has_onnx() { return test::run_command("/usr/bin/python3 -c 'import torch, onnx'").exit_code == 0; }

TEST(ShipOnnx, OpenCvDnnRunsTheFileAndMatchesTheTorchScriptLogitsOnRealImages) {
  if (!python_has_onnx()) GTEST_SKIP() << "/usr/bin/python3 lacks torch or onnx (scripts/setup.sh installs python3-onnx)";
  const auto& s = shipped();
  const std::string onnx_path = s.dir / "model.onnx";
  auto r = test::run_tltrain("export --checkpoint " + s.checkpoint + " --out " + onnx_path + " --format onnx");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("ONNX opset 10, batch axis dynamic; OpenCV DNN matches"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(onnx_path + ".torchscript.tmp")) << "the intermediate TorchScript file is left behind";

  // The val images through the eval loader, in one batch of 12 (export checked a batch of 2).
  auto mf = checkpoint::load_model_file(s.model);
  torch::NoGradGuard ng;
  const auto x = val_batch(mf);
  ASSERT_GT(x.size(0), 0);
  const auto want = mf.module.forward({x}).toTensor();
  checkpoint::OnnxNet net(onnx_path);
  int64_t classes = 0;
  const auto got = net.forward(x.data_ptr<float>(), x.size(0), x.size(2), x.size(3), &classes);
  ASSERT_EQ(classes, 3);
  ASSERT_EQ(x.size(0), 12);
  const auto got_t = torch::from_blob(const_cast<float*>(got.data()), want.sizes(), torch::kFloat);
  EXPECT_LE((got_t - want).abs().max().item<double>(), 1e-4) << got_t << want;
  EXPECT_TRUE(torch::equal(got_t.argmax(1), want.argmax(1)));

  // Metadata round-trip: what the model file says travels in metadata_props; onnx's checker passes.
  auto props = checkpoint::onnx_metadata(onnx_path);
  ASSERT_TRUE(props.count("tltrain_model")) << "no tltrain_model in metadata_props";
  const auto meta = json::parse(props.at("tltrain_model"));
  EXPECT_EQ(meta.at("classes"), json(s.classes));
  EXPECT_EQ(meta.at("preprocess"), mf.info.raw.at("preprocess"));
  EXPECT_EQ(meta.at("onnx").at("opset"), 10);
  EXPECT_EQ(json::parse(props.at("classes")), json(s.classes));
  auto check = test::run_command("/usr/bin/python3 -c \"import onnx; onnx.checker.check_model(onnx.load('" + onnx_path + "'))\"");
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

TEST(ShipOnnx, RefusesHalfPrecisionMissingPythonAndFilesThatAreNotOnnx) {
  const auto& s = shipped();
  auto half = test::run_tltrain("export --checkpoint " + s.checkpoint + " --out " + (s.dir / "h.onnx") + " --format onnx --precision bf16");
  EXPECT_EQ(half.exit_code, exit_code::usage) << half.output;
  EXPECT_NE(half.output.find("--format onnx writes fp32 weights: drop --precision bf16"), std::string::npos) << half.output;
  auto nopy = test::run_command("TLTRAIN_PYTHON=/nonexistent/python3 " + std::string(TLTRAIN_BIN) + " export --checkpoint " + s.checkpoint +
                                " --out " + (s.dir / "n.onnx") + " --format onnx");
  EXPECT_EQ(nopy.exit_code, exit_code::usage) << nopy.output;
  EXPECT_NE(nopy.output.find("/nonexistent/python3 is missing"), std::string::npos) << nopy.output;
  EXPECT_FALSE(fs::exists(s.dir / "n.onnx"));
  // An interpreter that never finishes is stopped at TLTRAIN_SCRIPT_TIMEOUT_S, with how to allow more.
  test::write_text(s.dir / "stuck.sh", "#!/bin/sh\nexec sleep 60\n");
  fs::permissions(s.dir / "stuck.sh", fs::perms::owner_all);
  auto stuck = test::run_command("TLTRAIN_SCRIPT_TIMEOUT_S=1 TLTRAIN_PYTHON=" + (s.dir / "stuck.sh") + " " + std::string(TLTRAIN_BIN) +
                                 " export --checkpoint " + s.checkpoint + " --out " + (s.dir / "stuck.onnx") + " --format onnx");
  EXPECT_EQ(stuck.exit_code, exit_code::runtime) << stuck.output;
  EXPECT_NE(stuck.output.find("did not finish within 1 s and was stopped (set TLTRAIN_SCRIPT_TIMEOUT_S"), std::string::npos) << stuck.output;
  EXPECT_FALSE(fs::exists(s.dir / "stuck.onnx"));
  test::write_text(s.dir / "not.onnx", "hello, I am text");
  test::expect_error([&] { checkpoint::onnx_metadata(s.dir / "not.onnx"); }, ErrorKind::Data, "not.onnx' is");
  test::expect_error([&] { checkpoint::onnx_metadata(s.model); }, ErrorKind::Data, "model.pt' is");
  test::expect_error([&] { checkpoint::OnnxNet net(s.dir / "not.onnx"); }, ErrorKind::Data, "OpenCV DNN cannot read");
}

TEST(ShipOnnx, AFileOpenCvCannotRunIsNotWrittenAndTheEarlierFileStays) {
  const auto& s = shipped();
  // A converter that writes what no runtime reads, standing in for an operator OpenCV DNN lacks.
  test::TempDir scripts("fake_scripts");
  const std::string out = s.dir / "unrunnable.onnx";
  auto r = export_with_stand_in(scripts, "export_onnx.py", "not onnx", "{'out': out, 'opset': 10, 'bytes': 8, 'ops': []}", s.checkpoint,
                                out, "--format onnx");
  EXPECT_EQ(r.exit_code, exit_code::runtime) << r.output;
  EXPECT_NE(r.output.find("unrunnable.onnx' not written: OpenCV DNN cannot run it"), std::string::npos) << r.output;
  // The manual path names files that exist once its first command has run: the TorchScript file
  // beside OUT, then the script where this tltrain finds it.
  EXPECT_NE(r.output.find("tltrain export --checkpoint " + s.checkpoint + " --out " + (s.dir / "unrunnable.pt")), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(scripts / "export_onnx.py --model " + (s.dir / "unrunnable.pt") + " --out " + out), std::string::npos) << r.output;
  EXPECT_EQ(read_file(out, "the earlier export"), "the user's earlier export");
  EXPECT_EQ(intermediates_of(out), std::vector<std::string>{}) << "the unchecked file is left behind";
}

TEST(ShipInt8, AFileThatDoesNotLoadBackIsNotWrittenAndCalibrationNeedsQuantize) {
  const auto& s = shipped();
  // A quantizer whose file does not load, standing in for a defect of scripts/quantize_int8.py.
  test::TempDir scripts("fake_quantizer");
  const std::string out = s.dir / "broken_int8.pt";
  auto r = export_with_stand_in(scripts, "quantize_int8.py", "not torchscript", "{'out': out, 'backend': 'onednn', 'top1_agreement': 1.0}",
                                s.checkpoint, out, "--quantize int8 --calibration 4");
  EXPECT_EQ(r.exit_code, exit_code::runtime) << r.output;
  EXPECT_NE(r.output.find("broken_int8.pt' not written: the int8 file does not run"), std::string::npos) << r.output;
  EXPECT_EQ(read_file(out, "the earlier export"), "the user's earlier export");
  EXPECT_EQ(intermediates_of(out), std::vector<std::string>{}) << "an intermediate file (fp32, calibration, unchecked) is left behind";

  // Calibration options mean nothing without --quantize: refused, not ignored.
  for (const std::string& opt : {std::string("--calibration 4"), "--calibration-data " + (s.dir / "val")}) {
    r = test::run_tltrain("export --checkpoint " + s.checkpoint + " --out " + (s.dir / "calib.pt") + " " + opt);
    EXPECT_EQ(r.exit_code, exit_code::usage) << opt << ": " << r.output;
    EXPECT_NE(r.output.find("requires --quantize"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(s.dir / "calib.pt"));
  }
}

TEST(ShipOnnx, PredictAndServeRunTheOnnxFileAsTheTorchScriptOne) {
  if (!python_has_onnx()) GTEST_SKIP() << "/usr/bin/python3 lacks torch or onnx (scripts/setup.sh installs python3-onnx)";
  const auto& s = shipped();
  const std::string onnx_path = s.dir / "predict.onnx";
  auto r = test::run_tltrain("export --checkpoint " + s.checkpoint + " --out " + onnx_path + " --format onnx");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto mf = checkpoint::load_model_file(onnx_path);
  ASSERT_TRUE(mf.is_onnx());
  EXPECT_EQ(mf.info.classes, s.classes);
  test::expect_error([&] { checkpoint::load_model_file(onnx_path, torch::Device(torch::kCUDA)); }, ErrorKind::Usage, "OpenCV DNN on the CPU");

  // predict: every image's probabilities as the TorchScript file's, batches that do not divide the set.
  ship::PredictOptions o;
  o.inputs = {s.dir / "val"};
  o.topk = 3;
  o.batch_size = 5;
  o.model = s.model;
  const auto want = ship::predict_images(o);
  o.model = onnx_path;
  const auto got = ship::predict_images(o);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].path, want[i].path);
    ASSERT_EQ(got[i].top.size(), 3u) << got[i].error;
    for (size_t j = 0; j < 3; ++j) {
      EXPECT_EQ(got[i].top[j].index, want[i].top[j].index) << got[i].path;
      EXPECT_NEAR(got[i].top[j].probability, want[i].top[j].probability, 1e-4) << got[i].path;
    }
  }
  r = test::run_tltrain("predict --model " + onnx_path + " --format csv --topk 1 " + want[0].path);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find(",1," + want[0].top[0].name + ","), std::string::npos) << r.output;

  // serve: concurrent forwards share one OpenCV net; each answer is predict's.
  serve::ServeOptions so;
  so.model = onnx_path;
  so.port = 0;
  so.forward_workers = 2;
  so.max_batch = 4;
  serve::Server server(so);
  const int port = server.start();
  ASSERT_GT(port, 0);
  std::vector<std::thread> clients;
  std::vector<std::string> answers(8);
  for (size_t c = 0; c < answers.size(); ++c)
    clients.emplace_back([&, c] {
      httplib::Client cli("127.0.0.1", port);
      cli.set_read_timeout(30, 0);
      auto res = cli.Post("/predict?topk=1", read_bytes(want[c % want.size()].path), "image/png");
      answers[c] = res && res->status == 200 ? json::parse(res->body)["predictions"][0]["class"].get<std::string>()
                                             : "failed: " + (res ? res->body : std::string("no response"));
    });
  for (auto& t : clients) t.join();
  for (size_t c = 0; c < answers.size(); ++c) EXPECT_EQ(answers[c], want[c % want.size()].top[0].name) << c;
  httplib::Client cli("127.0.0.1", port);
  auto meta = cli.Get("/metadata");
  ASSERT_TRUE(meta);
  EXPECT_EQ(json::parse(meta->body).at("serving").at("runtime"), "opencv-dnn");
  server.stop();

  // An ONNX file from elsewhere (a graph, no tltrain metadata) and text are Data errors naming the fix.
  test::write_text(s.dir / "foreign.onnx", std::string("\x3a\x00", 2));  // ModelProto with an empty graph
  test::expect_error([&] { checkpoint::load_model_file(s.dir / "foreign.onnx"); }, ErrorKind::Data, "without tltrain_model metadata");
  test::write_text(s.dir / "text.onnx", "hello, I am text");
  test::expect_error([&] { checkpoint::load_model_file(s.dir / "text.onnx"); }, ErrorKind::Data, "is not a TorchScript file nor ONNX");
}

TEST(ShipOnnx, OnnxRuntimeGivesTheTorchScriptLogitsToo) {
  if (!python_has_onnx()) GTEST_SKIP() << "/usr/bin/python3 lacks torch or onnx (scripts/setup.sh installs python3-onnx)";
  const std::string py = test::tools_python("onnxruntime");
  if (py.empty()) GTEST_SKIP() << "no ONNX Runtime: scripts/test_tools.sh installs it from PyPI into its venv (scripts/test.sh runs it)";
  const auto& s = shipped();
  const std::string onnx_path = s.dir / "ort.onnx";
  auto r = test::run_tltrain("export --checkpoint " + s.checkpoint + " --out " + onnx_path + " --format onnx");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto mf = checkpoint::load_model_file(s.model);
  torch::NoGradGuard ng;
  const auto x = val_batch(mf);
  ASSERT_GT(x.size(0), 0);
  const auto want = mf.module.forward({x}).toTensor().contiguous();
  write_npy(s.dir / "ort_in.npy", "<f4", x.sizes().vec(), x.data_ptr<float>(), x.numel() * sizeof(float));
  r = test::run_command(py + " " + TLTRAIN_SOURCE_DIR + "/tests/tools/onnxruntime_logits.py " + onnx_path + " " + (s.dir / "ort_in.npy") +
                        " " + (s.dir / "ort_out.npy"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string summary = r.output;  // the script's last line; ONNX Runtime may warn before it
  while (!summary.empty() && summary.back() == '\n') summary.pop_back();
  const auto info = json::parse(summary.substr(summary.rfind('\n') + 1));
  EXPECT_EQ(info.at("inputs"), json({"input"}));
  EXPECT_EQ(info.at("input_shape"), json({"batch", 3, 32, 32}));  // the dynamic batch axis, as exported
  EXPECT_EQ(info.at("logits_shape"), json({x.size(0), 3}));
  EXPECT_EQ(info.at("metadata"), json({"classes", "tltrain_model"}));
  const auto out = read_npy(s.dir / "ort_out.npy");
  ASSERT_EQ(out.data.size(), static_cast<size_t>(want.numel()) * sizeof(float)) << out.header;
  const auto got = torch::from_blob(const_cast<char*>(out.data.data()), want.sizes(), torch::kFloat);
  EXPECT_LE((got - want).abs().max().item<double>(), 1e-4) << got << want;
}

TEST(ShipPredict, PredictionsEqualEvalsAndBadFilesGetErrorRows) {
  const auto& s = shipped();
  test::TempDir extra("predict_bad");
  test::write_text(extra / "broken.jpg", "this is not a jpeg");
  ship::PredictOptions o;
  o.model = s.model;
  o.inputs = {s.dir / "val", extra / "broken.jpg"};
  o.topk = 2;
  o.batch_size = 5;  // batches that do not divide the set
  auto rows = ship::predict_images(o);
  auto p = eval_predictions(s.checkpoint, s.dir / "val");
  auto ds = data::scan_source(s.dir / "val");
  ASSERT_EQ(rows.size(), ds.samples.size() + 1);
  auto top1 = p.logits.argmax(1);
  for (size_t i = 0; i < p.indices.size(); ++i) {
    const auto& path = ds.samples[static_cast<size_t>(p.indices[i])].path;
    auto it = std::find_if(rows.begin(), rows.end(), [&](const ship::PredictRow& r) { return r.path == path; });
    ASSERT_NE(it, rows.end()) << path;
    ASSERT_EQ(it->top.size(), 2u) << it->error;
    EXPECT_EQ(it->top[0].index, top1[static_cast<int64_t>(i)].item<int64_t>()) << path;
    EXPECT_GE(it->top[0].probability, it->top[1].probability);
  }
  EXPECT_EQ(rows.back().path, extra / "broken.jpg");
  EXPECT_TRUE(rows.back().top.empty());
  EXPECT_FALSE(rows.back().error.empty());

  // --no-optimize runs the file as saved, not frozen with folded BatchNorm: the same answers.
  o.optimize = false;
  const auto as_saved = ship::predict_images(o);
  ASSERT_EQ(as_saved.size(), rows.size());
  for (size_t i = 0; i + 1 < rows.size(); ++i) {
    ASSERT_EQ(as_saved[i].path, rows[i].path);
    ASSERT_EQ(as_saved[i].top.size(), 2u) << as_saved[i].error;
    EXPECT_EQ(as_saved[i].top[0].index, rows[i].top[0].index) << rows[i].path;
    EXPECT_NEAR(as_saved[i].top[0].probability, rows[i].top[0].probability, 1e-4) << rows[i].path;
  }

  auto r = test::run_tltrain("predict --model " + s.model + " --format csv --topk 1 " + (s.dir / "val") + " " + (extra / "broken.jpg"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("broken.jpg,,,,,"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(",1,red,"), std::string::npos) << r.output;
  const auto saved = test::run_tltrain("predict --no-optimize --model " + s.model + " --format csv --topk 1 " + (s.dir / "val"));
  EXPECT_EQ(saved.exit_code, 0) << saved.output;
  EXPECT_NE(saved.output.find(",1,red,"), std::string::npos) << saved.output;
}

TEST(ShipServe, AnswersGoodAndBadRequestsAndKeepsServingUnderConcurrency) {
  const auto& s = shipped();
  serve::ServeOptions o;
  o.model = s.model;
  o.port = 0;  // ephemeral
  o.max_body_bytes = 64 * 1024;
  o.max_pixels = 40 * 40;  // the 16×16 squares pass, a 64×64 image trips the decode guard
  o.max_batch = 8;
  o.max_wait_ms = 20;
  o.forward_workers = 2;  // forwards side by side, whatever the machine's cores
  serve::Server server(o);
  int port = server.start();
  ASSERT_GT(port, 0);
  httplib::Client cli("127.0.0.1", port);
  cli.set_read_timeout(30, 0);

  auto ds = data::scan_source(s.dir / "val");
  const std::string good = read_bytes(ds.samples[0].path);
  const std::string expected = s.classes[static_cast<size_t>(ds.samples[0].label)];

  auto res = cli.Post("/predict", good, "image/png");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  auto j = json::parse(res->body);
  ASSERT_EQ(j.at("predictions").size(), 3u);
  std::string served_class = j["predictions"][0]["class"];

  // Multipart upload, as a browser form or curl -F sends it; top-k from the query.
  httplib::MultipartFormDataItems items{{"file", good, "square.png", "image/png"}};
  res = cli.Post("/predict?topk=1", items);
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(json::parse(res->body)["predictions"].size(), 1u);
  EXPECT_EQ(json::parse(res->body)["predictions"][0]["class"], served_class);

  // Same answer as predict.
  ship::PredictOptions po;
  po.model = s.model;
  po.inputs = {ds.samples[0].path};
  EXPECT_EQ(ship::predict_images(po)[0].top[0].name, served_class);

  auto expect_error = [&](const httplib::Result& r, int status) {
    ASSERT_TRUE(r) << "no response for expected " << status;
    EXPECT_EQ(r->status, status) << r->body;
    auto e = json::parse(r->body, nullptr, false);
    ASSERT_FALSE(e.is_discarded()) << r->body;
    EXPECT_TRUE(e.contains("error")) << r->body;
  };
  expect_error(cli.Post("/predict", std::string("\xff\xd8\xff\xe0 garbage, not a jpeg", 24), "image/jpeg"), 400);
  expect_error(cli.Post("/predict", "", "image/jpeg"), 400);
  expect_error(cli.Post("/predict", std::string(200 * 1024, 'x'), "application/octet-stream"), 413);
  test::write_solid_image(s.dir / "big.png", 64, 64, 10, 20, 30);
  expect_error(cli.Post("/predict", read_bytes(s.dir / "big.png"), "image/png"), 413);
  expect_error(cli.Get("/predict"), 405);
  expect_error(cli.Post("/health", "x", "text/plain"), 405);
  expect_error(cli.Get("/nowhere"), 404);

  res = cli.Get("/metadata");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  auto meta = json::parse(res->body);
  EXPECT_EQ(meta.at("classes"), json(s.classes));
  EXPECT_EQ(meta.at("input_size"), json({32, 32}));
  EXPECT_EQ(meta.at("backbone").at("arch"), "tiny");
  EXPECT_TRUE(meta.at("training").contains("best_value"));
  EXPECT_EQ(meta.at("serving").at("workers"), 2);

  // 32 clients at once, 4 requests each: every one answered, and the batcher did batch.
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  std::mutex failures_mu;
  std::vector<std::string> failures;
  for (int c = 0; c < 32; ++c)
    clients.emplace_back([&, c] {
      httplib::Client one("127.0.0.1", port);
      one.set_read_timeout(30, 0);
      for (int i = 0; i < 4; ++i) {
        const auto& sample = ds.samples[static_cast<size_t>((c + i) % ds.samples.size())];
        auto r = one.Post("/predict", read_bytes(sample.path), "image/png");
        if (r && r->status == 200 && json::parse(r->body)["predictions"].size() == 3) {
          ++ok;
        } else {
          std::lock_guard<std::mutex> lk(failures_mu);
          failures.push_back(r ? std::to_string(r->status) + " " + r->body : "no response: " + httplib::to_string(r.error()));
        }
      }
    });
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok.load(), 128) << json(failures).dump();
  auto stats = server.stats();
  EXPECT_GT(stats.at("largest_batch").get<int64_t>(), 1) << stats.dump();
  EXPECT_LT(stats.at("batches").get<int64_t>(), stats.at("images").get<int64_t>()) << stats.dump();

  res = cli.Get("/health");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  server.stop();
  EXPECT_FALSE(httplib::Client("127.0.0.1", port).Get("/health")) << "still listening after stop()";
}

TEST(ShipServe, StopAnswersRequestsInFlight) {
  const auto& s = shipped();
  serve::ServeOptions o;
  o.model = s.model;
  o.port = 0;
  o.max_batch = 4;
  o.max_wait_ms = 200;  // requests sit in the batcher while stop() begins
  serve::Server server(o);
  int port = server.start();
  auto ds = data::scan_source(s.dir / "val");
  const std::string good = read_bytes(ds.samples[0].path);
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int c = 0; c < 3; ++c)
    clients.emplace_back([&] {
      httplib::Client one("127.0.0.1", port);
      auto r = one.Post("/predict", good, "image/png");
      if (r && r->status == 200) ++ok;
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  server.stop();
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok.load(), 3);
}

TEST(ShipServe, CliServesAndStopsCleanlyOnSigterm) {
  const auto& s = shipped();
  test::TempDir d("serve_cli");
  // Port 0 prints the chosen port; SIGTERM must end it with exit 0 and its final stats line.
  auto r = test::run_command("(" + std::string(TLTRAIN_BIN) + " serve --model " + s.model + " --port 0 > " + (d / "out.txt") +
                             " 2>&1 & pid=$!; for i in $(seq 50); do grep -q 'serving' " + (d / "out.txt") +
                             " && break; sleep 0.1; done; kill -TERM $pid; wait $pid; echo exit=$?; cat " + (d / "out.txt") + ")");
  EXPECT_NE(r.output.find("exit=0"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("http://127.0.0.1:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("stopped;"), std::string::npos) << r.output;
  // A fresh process can freeze the model: the fast path is the one that serves.
  EXPECT_NE(r.output.find("\"optimized\":true"), std::string::npos) << r.output;
}

TEST(ShipExport, HalfPrecisionFilesHalveTheWeightsAndStillTakeFloat32) {
  const Shipped& s = shipped();
  const std::string bf16 = s.dir / "model_bf16.pt", fp16 = s.dir / "model_fp16.pt";
  ship::ExportOptions o{s.checkpoint, bf16};
  o.precision = config::Precision::Bf16;
  const auto summary = ship::export_model(o);
  EXPECT_TRUE(summary.checked);
  EXPECT_EQ(summary.metadata["precision"], "bf16");
  auto full = checkpoint::load_model_file(s.model), half = checkpoint::load_model_file(bf16);
  for (const auto& p : half.module.parameters()) EXPECT_EQ(p.scalar_type(), torch::kBFloat16);
  torch::manual_seed(4);
  auto x = torch::rand({3, 3, full.info.preprocess.height, full.info.preprocess.width});
  auto want = full.module.forward({x}).toTensor(), got = half.module.forward({x}).toTensor();
  EXPECT_EQ(got.scalar_type(), torch::kFloat);
  EXPECT_FALSE(torch::equal(got, want)) << "the bf16 file computed in fp32";
  EXPECT_LT((got - want).abs().max().item<double>(), 0.1 * std::max(1.0, want.abs().max().item<double>()));
  EXPECT_EQ(got.argmax(1).equal(want.argmax(1)), true);

  o.out = fp16;
  o.precision = config::Precision::Fp16;
  const auto f16 = ship::export_model(o);
  EXPECT_EQ(f16.checked, torch::cuda::is_available()) << "fp16 runs on CUDA only: checked there, nowhere else";
  auto h = checkpoint::load_model_file(fp16);
  for (const auto& p : h.module.parameters()) EXPECT_EQ(p.scalar_type(), torch::kHalf);
  EXPECT_LT(fs::file_size(fp16), fs::file_size(s.model));
  auto cli = test::run_tltrain("export --checkpoint " + s.checkpoint + " --out " + (s.dir / "cli_bf16.pt") + " --precision bf16");
  ASSERT_EQ(cli.exit_code, 0) << cli.output;
  EXPECT_NE(cli.output.find("bf16 weights"), std::string::npos) << cli.output;
}
