// train/optim.cpp: see train/optim.h.
#include "train/optim.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <set>
#include <type_traits>

#include "autograd/grad_mode.h"
#include "ops/copy.h"
#include "ops/multi_tensor.h"
#include "tensor/check.h"
#include "tensor/json.h"

namespace mg::train {

// ---- the reference ----------------------------------------------------------------------------

// Written out from the formulas in optim.h, independently of adamw_update.
void adamw_ref(std::vector<double>& p, std::vector<double>& m, std::vector<double>& v,
               const std::vector<std::vector<double>>& grads, const AdamWOptions& o, bool decay, int64_t t0) {
    const double wd = decay ? o.weight_decay : 0.0;
    for (size_t s = 0; s < grads.size(); ++s) {
        const double t = double(t0 + int64_t(s) + 1);
        const double bc1 = 1 - std::pow(o.beta1, t), bc2 = 1 - std::pow(o.beta2, t);
        for (size_t i = 0; i < p.size(); ++i) {
            const double g = grads[s][i];
            m[i] = o.beta1 * m[i] + (1 - o.beta1) * g;
            v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g;
            const double mhat = m[i] / bc1, vhat = v[i] / bc2;
            if (o.style == AdamWStyle::Transformers) {
                // eps is added to sqrt(v) before the bias correction
                p[i] -= o.lr * mhat / (std::sqrt(vhat) + o.eps / std::sqrt(bc2));
                p[i] -= o.lr * wd * p[i];
            } else {
                p[i] -= o.lr * wd * p[i];
                p[i] -= o.lr * mhat / (std::sqrt(vhat) + o.eps);
            }
        }
    }
}

// ---- names ----------------------------------------------------------------------------------

bool mamba_ssm_no_decay(const std::string& name) {
    const size_t dot = name.find_last_of('.');
    const std::string last = dot == std::string::npos ? name : name.substr(dot + 1);
    return last == "A_log" || last == "D";
}

std::string_view adamw_style_name(AdamWStyle s) { return s == AdamWStyle::Torch ? "torch" : "transformers"; }
AdamWStyle parse_adamw_style(std::string_view s) {
    if (s == "transformers") return AdamWStyle::Transformers;
    if (s == "torch") return AdamWStyle::Torch;
    throw Error(fmt::format("optimizer.style: '{}' is not a style, expected transformers or torch", s));
}

AdamWCoef adamw_coef(const AdamWOptions& o, int64_t t, bool decay, double lr_scale) {
    MG_ASSERT(t >= 1);
    const double bc1 = 1 - std::pow(o.beta1, double(t)), bc2 = 1 - std::pow(o.beta2, double(t));
    AdamWCoef c;
    c.beta1 = o.beta1;
    c.beta2 = o.beta2;
    c.eps = o.eps;
    c.bc2_sqrt = std::sqrt(bc2);
    const double lr = o.lr * lr_scale;
    c.step_size = o.style == AdamWStyle::Transformers ? lr * c.bc2_sqrt / bc1 : lr / bc1;
    c.decay = decay ? lr * o.weight_decay : 0.0;
    c.style = o.style;
    return c;
}

// ---- AdamW ----------------------------------------------------------------------------------

AdamW::AdamW(NamedTensors params, AdamWOptions options) : params_(std::move(params)), options_(std::move(options)) {
    const AdamWOptions& o = options_;
    MG_CHECK(o.lr >= 0 && std::isfinite(o.lr), "AdamW: lr is {}, expected a finite value >= 0", o.lr);
    MG_CHECK(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1,
             "AdamW: betas are ({}, {}), expected each in [0, 1)", o.beta1, o.beta2);
    MG_CHECK(o.eps > 0, "AdamW: eps is {}, expected > 0", o.eps);
    MG_CHECK(o.weight_decay >= 0, "AdamW: weight_decay is {}, expected >= 0", o.weight_decay);
    std::set<std::string> seen;
    std::map<const Storage*, std::string> storages;
    for (const auto& [name, p] : params_) {
        MG_CHECK(seen.insert(name).second, "AdamW: parameter name '{}' appears twice", name);
        MG_CHECK(p.defined(), "AdamW: parameter '{}' is undefined", name);
        // tied weights (e.g. lm_head.weight = embedding.weight) must be listed once, or they
        // would take two steps per step
        auto [it, fresh] = storages.emplace(p.impl().storage.get(), name);
        MG_CHECK(fresh, "AdamW: parameters '{}' and '{}' share storage (tied weights?); list each tensor once",
                 it->second, name);
        MG_CHECK(is_differentiable(p.dtype()), "AdamW: parameter '{}' is {}, expected f32 or f64", name, p.desc());
        MG_CHECK(p.is_contiguous(), "AdamW: parameter '{}' ({}) is not contiguous", name, p.desc());
        exp_avg_.push_back(Tensor::zeros(p.shape(), p.options()));
        exp_avg_sq_.push_back(Tensor::zeros(p.shape(), p.options()));
        steps_.push_back(0);
        decay_.push_back(!(o.no_decay && o.no_decay(name)));
        const double scale = o.lr_scale ? o.lr_scale(name) : 1.0;
        MG_CHECK(scale >= 0 && std::isfinite(scale), "AdamW: lr_scale of '{}' is {}, expected a finite value >= 0",
                 name, scale);
        scale_.push_back(scale);
    }
}

void AdamW::step(const std::vector<Tensor>& skip_words) {
    autograd::NoGrad no_grad;
    std::vector<AdamWTensors> items;
    for (size_t i = 0; i < params_.size(); ++i) {
        const auto& [name, p] = params_[i];
        Tensor g = p.grad();
        if (!g.defined()) continue;
        MG_CHECK(g.shape() == p.shape() && g.dtype() == p.dtype() && g.device() == p.device(),
                 "AdamW: gradient of '{}' is {}, expected {} like the parameter", name, g.desc(), p.desc());
        items.push_back({p, exp_avg_[i], exp_avg_sq_[i], g.contiguous(), adamw_coef(options_, ++steps_[i], decay_[i], scale_[i])});
    }
    adamw_step_(items, skip_words);
}

void AdamW::zero_grad() {
    for (const auto& np : params_) np.second.zero_grad();
}

NamedTensors AdamW::state_tensors() const {
    NamedTensors out;
    for (size_t i = 0; i < params_.size(); ++i) out.emplace_back("optimizer.exp_avg." + params_[i].first, exp_avg_[i]);
    for (size_t i = 0; i < params_.size(); ++i)
        out.emplace_back("optimizer.exp_avg_sq." + params_[i].first, exp_avg_sq_[i]);
    return out;
}

std::string AdamW::state_json() const {
    nlohmann::ordered_json j;
    j["type"] = "adamw";
    j["style"] = adamw_style_name(options_.style);
    j["lr"] = options_.lr;
    j["betas"] = {options_.beta1, options_.beta2};
    j["eps"] = options_.eps;
    j["weight_decay"] = options_.weight_decay;
    nlohmann::ordered_json steps = nlohmann::ordered_json::object();
    nlohmann::ordered_json no_decay = nlohmann::ordered_json::array();
    for (size_t i = 0; i < params_.size(); ++i) {
        steps[params_[i].first] = steps_[i];
        if (!decay_[i]) no_decay.push_back(params_[i].first);
    }
    j["steps"] = steps;
    j["no_decay"] = no_decay; // informative: the predicate itself is the caller's
    nlohmann::ordered_json scaled = nlohmann::ordered_json::object();
    for (size_t i = 0; i < params_.size(); ++i)
        if (scale_[i] != 1.0) scaled[params_[i].first] = scale_[i];
    if (!scaled.empty()) j["lr_scale"] = scaled; // informative, as no_decay
    return j.dump();
}

void AdamW::load_state(const std::map<std::string, Tensor>& tensors, const std::string& json) {
    const nlohmann::json j = parse_json(json, "AdamW::load_state: the optimizer state");
    MG_CHECK(json_string_at(j, "type", "") == "adamw",
             "AdamW::load_state: expected an object with \"type\": \"adamw\", got {}", text_excerpt(json, 200));
    const auto& steps = j.find("steps");
    MG_CHECK(steps != j.end() && steps->is_object(), "AdamW::load_state: no \"steps\" object in the optimizer state");
    // Check everything before changing anything.
    std::vector<int64_t> new_steps(params_.size());
    std::vector<std::pair<Tensor, Tensor>> copies; // (live state, loaded)
    for (size_t i = 0; i < params_.size(); ++i) {
        const std::string& name = params_[i].first;
        auto s = steps->find(name);
        MG_CHECK(s != steps->end() && s->is_number_integer() && s->get<int64_t>() >= 0,
                 "AdamW::load_state: no step count for parameter '{}'", name);
        new_steps[i] = s->get<int64_t>();
        for (const auto& [key, live] : {std::pair{"optimizer.exp_avg." + name, exp_avg_[i]},
                                        std::pair{"optimizer.exp_avg_sq." + name, exp_avg_sq_[i]}}) {
            auto it = tensors.find(key);
            MG_CHECK(it != tensors.end(), "AdamW::load_state: tensor '{}' is missing", key);
            MG_CHECK(it->second.shape() == live.shape() && is_floating(it->second.dtype()),
                     "AdamW::load_state: tensor '{}' is {}, expected {}", key, it->second.desc(), live.desc());
            copies.emplace_back(live, it->second);
        }
    }
    MG_CHECK(steps->size() == params_.size(),
             "AdamW::load_state: the state has step counts for {} parameters, this optimizer has {}",
             steps->size(), params_.size());
    for (auto& [live, loaded] : copies) copy_into(live, loaded);
    steps_ = new_steps;
    if (j.contains("lr") && j["lr"].is_number()) options_.lr = j["lr"].get<double>();
}

} // namespace mg::train
