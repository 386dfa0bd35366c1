// Simulation model of the ECP5 MULT18X18D, the subset the septet tile instantiates (rtl/correct.py
// registered_product, elaborated with rtl.correct.Ecp5DspPlatform for synthesis).  yosys ships only a
// blackbox of this primitive (share/lattice/cells_bb_ecp5.v), so the project has its own model, written
// from the primitive's documented behaviour (Lattice's ECP5 sysDSP usage guide; the same semantics as
// Lattice's own simulation library model of MULT18X18D, which was read to check them, not copied):
//
//   * P = A * B on 36 bits, each operand sign-extended when its SIGNED input is 1, zero-extended when 0;
//   * the A and B input registers (with SIGNEDA/SIGNEDB), the pipeline register and the output register are
//     each bypassed ("NONE") or clocked on the rising edge of CLK0 ("CLK0"), enabled by CE0 and cleared by
//     RST0 synchronously (RESETMODE "SYNC"), reset having priority over the enable.
//
// Anything else (other clocks, enables or resets, the C input registers, the shift inputs SOURCEA/SOURCEB,
// asynchronous reset, MULT_BYPASS) is not modelled and stops the simulation (at time 0; the shift inputs at a
// clock edge), so a use of the primitive outside this subset cannot pass a test by accident.
/* verilator lint_off DECLFILENAME */  // the primitive's name, in a file named for the project
module MULT18X18D #(
    parameter REG_INPUTA_CLK = "NONE",
    parameter REG_INPUTA_CE = "CE0",
    parameter REG_INPUTA_RST = "RST0",
    parameter REG_INPUTB_CLK = "NONE",
    parameter REG_INPUTB_CE = "CE0",
    parameter REG_INPUTB_RST = "RST0",
    parameter REG_INPUTC_CLK = "NONE",
    parameter REG_PIPELINE_CLK = "NONE",
    parameter REG_PIPELINE_CE = "CE0",
    parameter REG_PIPELINE_RST = "RST0",
    parameter REG_OUTPUT_CLK = "NONE",
    parameter REG_OUTPUT_CE = "CE0",
    parameter REG_OUTPUT_RST = "RST0",
    /* verilator lint_off UNUSEDPARAM */
    parameter GSR = "ENABLED",      // the global set/reset at configuration: not modelled (nothing reads the
    /* verilator lint_on UNUSEDPARAM */  // datapath registers before writing them)
    parameter RESETMODE = "SYNC",
    parameter MULT_BYPASS = "DISABLED"
) (
    input A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0,
    input B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0,
    input C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0,
    input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
    input CLK0, CE0, RST0,
    output P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0
);
    // Which registers are used; the configurations this model covers (see the header).
    localparam A_REG = REG_INPUTA_CLK == "CLK0";
    localparam B_REG = REG_INPUTB_CLK == "CLK0";
    localparam PIPE_REG = REG_PIPELINE_CLK == "CLK0";
    localparam OUT_REG = REG_OUTPUT_CLK == "CLK0";
    initial begin
        if (!(A_REG || REG_INPUTA_CLK == "NONE") || !(B_REG || REG_INPUTB_CLK == "NONE")
                || !(PIPE_REG || REG_PIPELINE_CLK == "NONE") || !(OUT_REG || REG_OUTPUT_CLK == "NONE")
                || REG_INPUTC_CLK != "NONE")
            $fatal(1, "MULT18X18D model: only registers clocked by CLK0 (or bypassed) are modelled");
        if (REG_INPUTA_CE != "CE0" || REG_INPUTB_CE != "CE0" || REG_PIPELINE_CE != "CE0" || REG_OUTPUT_CE != "CE0"
                || REG_INPUTA_RST != "RST0" || REG_INPUTB_RST != "RST0" || REG_PIPELINE_RST != "RST0"
                || REG_OUTPUT_RST != "RST0")
            $fatal(1, "MULT18X18D model: only CE0 and RST0 are modelled");
        if (RESETMODE != "SYNC" || MULT_BYPASS != "DISABLED")
            $fatal(1, "MULT18X18D model: only RESETMODE SYNC without MULT_BYPASS is modelled");
    end
    always @(posedge CLK0) begin
        if (SOURCEA !== 1'b0 || SOURCEB !== 1'b0)
            $fatal(1, "MULT18X18D model: the shift inputs (SOURCEA/SOURCEB = 1) are not modelled");
    end

    wire [17:0] a = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] b = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
    /* verilator lint_off UNUSEDSIGNAL */
    wire [17:0] c = {C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0};    // the C input only feeds the shift modes, not modelled
    /* verilator lint_on UNUSEDSIGNAL */

    // Input registers (the sign controls travel with their operand).
    reg [17:0] a_q, b_q;
    reg signed_a_q, signed_b_q;
    always @(posedge CLK0) begin
        if (RST0) begin
            a_q <= 18'd0; signed_a_q <= 1'b0; b_q <= 18'd0; signed_b_q <= 1'b0;
        end else if (CE0) begin
            a_q <= a; signed_a_q <= SIGNEDA; b_q <= b; signed_b_q <= SIGNEDB;
        end
    end
    wire [17:0] a_in = A_REG ? a_q : a;
    wire [17:0] b_in = B_REG ? b_q : b;
    wire sign_a = A_REG ? signed_a_q : SIGNEDA;
    wire sign_b = B_REG ? signed_b_q : SIGNEDB;

    // The 36-bit product of the extended operands.
    wire [35:0] a_ext = {{18{sign_a & a_in[17]}}, a_in};
    wire [35:0] b_ext = {{18{sign_b & b_in[17]}}, b_in};
    wire [35:0] product = a_ext * b_ext;

    // Pipeline and output registers.
    reg [35:0] pipeline_q, output_q;
    always @(posedge CLK0) begin
        if (RST0) begin
            pipeline_q <= 36'd0; output_q <= 36'd0;
        end else if (CE0) begin
            pipeline_q <= product;
            output_q <= PIPE_REG ? pipeline_q : product;
        end
    end
    wire [35:0] p_pipe = PIPE_REG ? pipeline_q : product;
    wire [35:0] p = OUT_REG ? output_q : p_pipe;
    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0} = p;
endmodule
