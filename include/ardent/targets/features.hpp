#pragma once
// targets::Features: intermediate feature maps (FitNets, Romero et al. 2015; Heo et al., "A
// Comprehensive Overhaul of Feature Distillation", ICCV 2019). Stages are paired between student
// and teacher; where their channel counts differ, a learned connector maps the student's stage to
// the teacher's width,
//
//   r(f_s) = BN(Conv1x1(f_s)),   then, if spatial sizes differ, adaptive average pooling to the teacher's.
//
// Models provide stages through a `features(x)` member returning std::map<std::string, Tensor>
// (ardent's models do) or, for TorchScript, an exported `features` method returning Dict[str, Tensor].
// The connectors are built by bind() when the Distiller is constructed, from a probe batch of
// FeaturesOptions::input_shape, and are trained with the student (Distiller::parameters()).

#include "ardent/core/check.hpp"
#include "ardent/core/mode_guard.hpp"
#include "ardent/core/soft_target.hpp"
#include "ardent/models/conv_bn.hpp"
#include "ardent/targets/views.hpp"

#include <map>
#include <string>
#include <utility>

namespace ardent::targets {

/// A model that exposes its intermediate stages.
template <typename M>
concept HasFeatures = ScriptModule<M> ||(ModulePointer<M>&& requires(M& model, const torch::Tensor& x) {
  { model->features(x) } -> std::convertible_to<std::map<std::string, torch::Tensor>>;
});

/// The named stage outputs of a model on x.
template <Model M>
std::map<std::string, torch::Tensor> features(M& model, const torch::Tensor& x) {
  static_assert(HasFeatures<M>,
                "ardent::targets::Features needs models with a member features(x) returning "
                "std::map<std::string, torch::Tensor> (or a TorchScript model exporting a `features` method)");
  if constexpr (ScriptModule<M>) {
    TORCH_CHECK(model.find_method("features").has_value(),
                "ardent::targets::features: the TorchScript model has no `features` method; export one returning "
                "Dict[str, Tensor] (decorate it with @torch.jit.export)");
    std::map<std::string, torch::Tensor> result;
    for (const auto& entry : model.run_method("features", x).toGenericDict()) {
      result.emplace(entry.key().toStringRef(), entry.value().toTensor());
    }
    return result;
  } else {
    return model->features(x);
  }
}

/// (student stage, teacher stage) pairs.
using StagePairs = std::vector<std::pair<std::string, std::string>>;

struct FeaturesOptions {
  /// Shape of one input sample, e.g. {1, 28, 28}: the probe that sizes the connectors.
  TORCH_ARG(std::vector<int64_t>, input_shape) = {};
  /// (student stage, teacher stage) pairs; empty: every stage name the two models share (models
  /// with different stage names must name their pairs).
  TORCH_ARG(StagePairs, pairs) = {};
};

class Features {
 public:
  using View = FeatureMaps;

  explicit Features(FeaturesOptions options = {}) : options_(std::move(options)) {}

  const FeaturesOptions& options() const { return options_; }

  /// Pairs the stages and builds a connector wherever channel counts differ.
  template <Model Teacher, Model Student>
  void bind(Teacher& teacher, Student& student) {
    constexpr std::string_view name = "ardent::targets::Features";
    if (options_.input_shape().empty()) {
      fail_argument(
          name, "input_shape",
          "is empty, expected the shape of one input sample, e.g. FeaturesOptions().input_shape({1, 28, 28}), "
          "to size the connectors before training");
    }
    std::vector<int64_t> probe_shape{2};
    probe_shape.insert(probe_shape.end(), options_.input_shape().begin(), options_.input_shape().end());
    const auto device = device_of(student).value_or(torch::Device(torch::kCPU));
    const auto parameters = ardent::parameters(student);
    const auto dtype = parameters.empty() ? torch::kFloat32 : parameters.front().scalar_type();
    const auto probe = torch::zeros(probe_shape, torch::TensorOptions().device(device).dtype(dtype));
    std::map<std::string, torch::Tensor> teacher_stages;
    std::map<std::string, torch::Tensor> student_stages;
    {
      torch::NoGradGuard no_grad;
      const ModeGuard teacher_mode(teacher);
      const ModeGuard student_mode(student);
      teacher_stages = features(teacher, probe);
      student_stages = features(student, probe);
    }
    pairs_ = options_.pairs();
    if (pairs_.empty()) {
      for (const auto& entry : student_stages) {
        if (teacher_stages.contains(entry.first)) pairs_.emplace_back(entry.first, entry.first);
      }
      if (pairs_.empty()) {
        fail_argument(name, "pairs",
                      "is empty and the models share no stage name, expected (student stage, teacher stage) pairs, "
                      "e.g. FeaturesOptions().pairs({{\"stage7\", \"layer4\"}})");
      }
    }
    connectors_ = torch::nn::ModuleList();
    connector_of_pair_.clear();
    teacher_spatial_size_.clear();
    for (const auto& [student_stage, teacher_stage] : pairs_) {
      const auto& fs = stage(student_stages, student_stage, "student");
      const auto& ft = stage(teacher_stages, teacher_stage, "teacher");
      TORCH_CHECK(fs.dim() == 4 && ft.dim() == 4, name, ": stages '", student_stage, "' and '", teacher_stage,
                  "' have shapes ", fs.sizes(), " and ", ft.sizes(), ", expected feature maps [B, C, H, W]");
      teacher_spatial_size_.push_back({ft.size(2), ft.size(3)});
      if (fs.size(1) == ft.size(1)) {
        connector_of_pair_.push_back(-1);
        continue;
      }
      connector_of_pair_.push_back(static_cast<int64_t>(connectors_->size()));
      torch::nn::Sequential connector(
          torch::nn::Conv2d(torch::nn::Conv2dOptions(fs.size(1), ft.size(1), 1).bias(false)),
          torch::nn::BatchNorm2d(ft.size(1)));
      connector->to(device, fs.scalar_type());
      connectors_->push_back(connector);
    }
  }

  template <Model M>
  View teacher_view(M& teacher, const torch::Tensor& x) const {
    const auto stages = features(teacher, x);
    View view;
    for (const auto& pair : pairs()) view.stages.push_back(stage(stages, pair.second, "teacher"));
    return view;
  }

  template <Model M>
  View student_view(M& student, const torch::Tensor& x) const {
    const auto stages = features(student, x);
    View view;
    const auto& p = pairs();
    for (std::size_t i = 0; i < p.size(); ++i) {
      auto f = stage(stages, p[i].first, "student");
      if (connector_of_pair_[i] >= 0) {
        const torch::nn::Sequential connector(
            connectors_->ptr<torch::nn::SequentialImpl>(static_cast<std::size_t>(connector_of_pair_[i])));
        f = models::conv_bn(connector, f);  // synchronised BatchNorm applies here too
      }
      const auto& size = teacher_spatial_size_[i];
      if (f.size(2) != size[0] || f.size(3) != size[1]) f = torch::adaptive_avg_pool2d(f, size);
      view.stages.push_back(std::move(f));
    }
    return view;
  }

  /// The connectors' trainable parameters.
  std::vector<torch::Tensor> parameters() const {
    return connectors_ ? connectors_->parameters() : std::vector<torch::Tensor>{};
  }

  /// The connectors (for checkpoints, train/eval, device moves).
  torch::nn::ModuleList connectors() const { return connectors_; }

  /// The (student stage, teacher stage) pairs in use.
  const StagePairs& pairs() const {
    TORCH_CHECK(connectors_, "ardent::targets::Features: used before bind(teacher, student) built its connectors");
    return pairs_;
  }

  void train(bool on = true) {
    if (connectors_) connectors_->train(on);
  }

 private:
  static const torch::Tensor& stage(const std::map<std::string, torch::Tensor>& stages, const std::string& key,
                                    std::string_view whose) {
    const auto found = stages.find(key);
    if (found == stages.end()) {
      std::string names;
      for (const auto& entry : stages) names += (names.empty() ? "" : ", ") + entry.first;
      TORCH_CHECK(false, "ardent::targets::Features: the ", whose, " has no stage '", key,
                  "'; its stages are: ", names);
    }
    return found->second;
  }

  FeaturesOptions options_;
  StagePairs pairs_;
  // Copies made after bind() share the connectors (the Distiller holds the bound copy: reach it
  // with distiller.target()).
  torch::nn::ModuleList connectors_{nullptr};
  std::vector<int64_t> connector_of_pair_;
  std::vector<std::vector<int64_t>> teacher_spatial_size_;
};

static_assert(SoftTarget<Features>);

}  // namespace ardent::targets
