// wms_header_check: compile a generated wms_model.h's RTNeural part and run its loader.
//
// Build against the RTNeural stand-in (or, where RTNeural is installed, against the
// real library by replacing the mock include path with RTNeural's):
//   g++ -std=c++17 -I cpp -I cpp/mock_rtneural -I EXPORT_DIR cpp/wms_header_check.cpp -o wms_header_check
// Run:
//   ./wms_header_check EXPORT_DIR/wms_model.json
//
// Checks that wms::ModelType is a valid chain of layers and that wms::loadModel
// loads every layer from JSON tensors of the right shapes. Exits 0 when it does,
// 1 otherwise.
#include <cstdio>
#include <exception>

#include "wms_model.h"

int main(int argc, char** argv)
{
    if(argc < 2)
    {
        std::fprintf(stderr, "usage: %s wms_model.json\n", argv[0]);
        return 2;
    }
    try
    {
        const nlohmann::json modelJson = wms_json::readJson(argv[1]);
        wms::ModelType model;
        wms::loadModel(modelJson, model);
        if(!model.allLoaded() || !model.was_reset)
        {
            std::fprintf(stderr, "wms_header_check: loadModel left layers unloaded\n");
            return 1;
        }
        std::printf("loadModel: all layers loaded\n");
        return 0;
    }
    catch(const std::exception& e)
    {
        std::fprintf(stderr, "wms_header_check: %s\n", e.what());
        return 1;
    }
}
