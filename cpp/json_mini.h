// json_mini.h: a minimal JSON reader (objects, arrays, numbers, strings, true/false/null),
// enough for the files `wms export --format rtneural` writes. Used by wms_check.cpp and
// the RTNeural stand-in in mock_rtneural/ (RTNeural itself reads them with nlohmann::json).
#pragma once

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace wms_json
{
// ---- a minimal JSON reader: objects, arrays, numbers, strings, true/false/null
struct Json
{
    enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
    double number = 0.0;
    std::string text;
    std::vector<Json> items;
    std::map<std::string, Json> fields;

    const Json& at(const std::string& key) const
    {
        auto it = fields.find(key);
        if(kind != Object || it == fields.end())
            throw std::runtime_error("missing key \"" + key + "\"");
        return it->second;
    }
    bool has(const std::string& key) const { return kind == Object && fields.count(key) > 0; }
};

class Parser
{
public:
    explicit Parser(const std::string& s) : s_(s) {}

    Json parse()
    {
        Json v = value();
        skip();
        if(pos_ != s_.size())
            fail("trailing characters");
        return v;
    }

private:
    const std::string& s_;
    size_t pos_ = 0;

    [[noreturn]] void fail(const std::string& what) const
    {
        throw std::runtime_error("JSON: " + what + " at offset " + std::to_string(pos_));
    }
    void skip()
    {
        while(pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_])))
            ++pos_;
    }
    bool eat(char c)
    {
        skip();
        if(pos_ < s_.size() && s_[pos_] == c)
        {
            ++pos_;
            return true;
        }
        return false;
    }
    Json value()
    {
        skip();
        if(pos_ >= s_.size())
            fail("unexpected end");
        Json v;
        char c = s_[pos_];
        if(c == '{')
        {
            ++pos_;
            v.kind = Json::Object;
            if(eat('}'))
                return v;
            do
            {
                skip();
                std::string key = string();
                if(!eat(':'))
                    fail("expected ':'");
                v.fields[key] = value();
            } while(eat(','));
            if(!eat('}'))
                fail("expected '}'");
        }
        else if(c == '[')
        {
            ++pos_;
            v.kind = Json::Array;
            if(eat(']'))
                return v;
            do
                v.items.push_back(value());
            while(eat(','));
            if(!eat(']'))
                fail("expected ']'");
        }
        else if(c == '"')
        {
            v.kind = Json::String;
            v.text = string();
        }
        else if(s_.compare(pos_, 4, "true") == 0 || s_.compare(pos_, 5, "false") == 0)
        {
            v.kind = Json::Bool;
            v.number = s_[pos_] == 't';
            pos_ += s_[pos_] == 't' ? 4 : 5;
        }
        else if(s_.compare(pos_, 4, "null") == 0)
            pos_ += 4;
        else
        {
            char* end = nullptr;
            v.kind = Json::Number;
            v.number = std::strtod(s_.c_str() + pos_, &end);
            if(end == s_.c_str() + pos_)
                fail("bad value");
            pos_ = static_cast<size_t>(end - s_.c_str());
        }
        return v;
    }
    std::string string()
    {
        if(s_[pos_] != '"')
            fail("expected a string");
        std::string out;
        for(++pos_; pos_ < s_.size() && s_[pos_] != '"'; ++pos_)
        {
            if(s_[pos_] == '\\')
                ++pos_; // escapes are kept as their second character: enough for key names
            out += s_[pos_];
        }
        ++pos_;
        return out;
    }
};

inline Json readJson(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if(!in)
        throw std::runtime_error(path + ": cannot open");
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    return Parser(text).parse();
}
} // namespace wms_json
