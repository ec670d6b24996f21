// Simulation model of the ECP5 MULT18X18D, for the subset hdl/rtl/dsp.py instantiates:
// 18x18 multiply (SIGNEDA/SIGNEDB per operand), the A, B and output registers each either
// bypassed ("NONE") or clocked by CLK0 with the clock enable its REG_*_CE names, no resets
// (RST* tied low), no pipeline register, no cascade or shift inputs. Written from Lattice's
// ECP5 sysDSP usage guide (FPGA-TN-02205): with REG_INPUTA/B and REG_OUTPUT enabled the product
// appears two clocks after its operands. Any other configuration stops the simulation.
module MULT18X18D #(
    parameter REG_INPUTA_CLK = "NONE", parameter REG_INPUTA_CE = "CE0",
    parameter REG_INPUTA_RST = "RST0",
    parameter REG_INPUTB_CLK = "NONE", parameter REG_INPUTB_CE = "CE0",
    parameter REG_INPUTB_RST = "RST0",
    parameter REG_INPUTC_CLK = "NONE",
    parameter REG_PIPELINE_CLK = "NONE", parameter REG_PIPELINE_CE = "CE0",
    parameter REG_PIPELINE_RST = "RST0",
    parameter REG_OUTPUT_CLK = "NONE", parameter REG_OUTPUT_CE = "CE0",
    parameter REG_OUTPUT_RST = "RST0",
    parameter CLK0_DIV = "ENABLED", parameter CLK1_DIV = "ENABLED",
    parameter CLK2_DIV = "ENABLED", parameter CLK3_DIV = "ENABLED",
    parameter HIGHSPEED_CLK = "NONE", parameter GSR = "ENABLED",
    parameter CAS_MATCH_REG = "FALSE", parameter SOURCEB_MODE = "B_SHIFT",
    parameter MULT_BYPASS = "DISABLED", parameter RESETMODE = "SYNC"
) (
    input A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14, A15, A16, A17,
    input B0, B1, B2, B3, B4, B5, B6, B7, B8, B9, B10, B11, B12, B13, B14, B15, B16, B17,
    input C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14, C15, C16, C17,
    input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
    input CLK0, CLK1, CLK2, CLK3, CE0, CE1, CE2, CE3, RST0, RST1, RST2, RST3,
    output P0, P1, P2, P3, P4, P5, P6, P7, P8, P9, P10, P11, P12, P13, P14, P15, P16, P17,
    output P18, P19, P20, P21, P22, P23, P24, P25, P26, P27, P28, P29, P30, P31, P32, P33,
    output P34, P35
);
    wire [17:0] a = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] b = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
    wire [3:0] ce = {CE3, CE2, CE1, CE0};
    function integer ce_index(input [8*4-1:0] name);
        ce_index = name[7:0] - "0";
    endfunction
    initial begin
        if (REG_PIPELINE_CLK != "NONE" || REG_INPUTC_CLK != "NONE" || MULT_BYPASS != "DISABLED"
            || (REG_INPUTA_CLK != "NONE" && REG_INPUTA_CLK != "CLK0")
            || (REG_INPUTB_CLK != "NONE" && REG_INPUTB_CLK != "CLK0")
            || (REG_OUTPUT_CLK != "NONE" && REG_OUTPUT_CLK != "CLK0")) begin
            $display("MULT18X18D model: configuration outside the modelled subset");
            $finish;
        end
    end
    reg [17:0] a_r, b_r, sa_r, sb_r;
    reg [35:0] p_r;
    always @(posedge CLK0) begin
        if (ce[ce_index(REG_INPUTA_CE)]) begin a_r <= a; sa_r <= SIGNEDA; end
        if (ce[ce_index(REG_INPUTB_CE)]) begin b_r <= b; sb_r <= SIGNEDB; end
    end
    wire [17:0] a_q = REG_INPUTA_CLK == "NONE" ? a : a_r;
    wire [17:0] b_q = REG_INPUTB_CLK == "NONE" ? b : b_r;
    wire sa_q = REG_INPUTA_CLK == "NONE" ? SIGNEDA : sa_r[0];
    wire sb_q = REG_INPUTB_CLK == "NONE" ? SIGNEDB : sb_r[0];
    wire signed [36:0] a_x = {{19{sa_q & a_q[17]}}, a_q};
    wire signed [36:0] b_x = {{19{sb_q & b_q[17]}}, b_q};
    wire signed [73:0] full = a_x * b_x;
    wire [35:0] prod = full[35:0];
    always @(posedge CLK0)
        if (ce[ce_index(REG_OUTPUT_CE)]) p_r <= prod;
    wire [35:0] p = REG_OUTPUT_CLK == "NONE" ? prod : p_r;
    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20,
            P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2,
            P1, P0} = p;
endmodule
