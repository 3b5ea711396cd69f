// tests/test_checkpoint_compat.cpp: checkpoints written by an older program (commit ac8e6f2, before
// the upper floors were rebuilt) still load and evaluate to exactly the numbers that program
// printed. The fixtures and the commands that made them: tests/fixtures/old_checkpoint/README.md.
#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/helpers.h"
#include "tests/train_helpers.h"
#include "train/evaluate.h"

using mg::test::run_cli;

namespace {

const std::string kDir = "tests/fixtures/old_checkpoint/";

} // namespace

TEST_CASE("checkpoint compatibility: ac8e6f2's checkpoints evaluate to the numbers it printed", "[checkpoint]") {
    for (std::string name : {"mamba", "gs"}) {
        INFO(name);
        const std::string ckpt = kDir + name + "_ac8e6f2.safetensors";
        // The old program's stdout, verbatim: the table names the checkpoint by this relative path.
        const std::string expected = mg::test::read_all(kDir + name + "_eval.txt");
        REQUIRE(!expected.empty()); // the fixture is there
        mg::test::Run r = run_cli("eval --checkpoint " + ckpt + " --device cpu --examples 64 --variant standard "
                                  "--grid 64x4");
        CHECK(r.status == 0);
        // the old table byte for byte; eval now adds one line, each variant's loss, after it
        CHECK(r.out.substr(0, expected.size()) == expected);
        const std::string added = r.out.substr(std::min(r.out.size(), expected.size()));
        CHECK(added.starts_with("loss (mean cross-entropy per labelled token, nats): standard "));
        CHECK(std::count(added.begin(), added.end(), '\n') == 1);
    }
    // The old checkpoint with global selection ran the SiLU gate and says nothing of a gate: it
    // must load with that gate, not today's sigmoid default (which scores it 4.69, not 6.25).
    mg::train::LoadedModel gs = mg::train::load_model(kDir + "gs_ac8e6f2.safetensors", "cpu");
    REQUIRE(gs.mamba().backbone.layers[0]->mixer.global_selection());
    CHECK(gs.mamba().backbone.layers[0]->mixer.gate_function == mg::nn::GateFunction::silu);
    CHECK(gs.state.step == 512);
}
